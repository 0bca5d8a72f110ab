"""Stable Diffusion pipelines with random weights, built from configs: SD2's real architecture or a tiny twin.

No SD weights can be downloaded here, so tests and benchmarks build the same ``StableDiffusionPipeline``
class from configs (SD2's UNet, VAE and OpenCLIP-H text encoder sizes, or a tiny version of each) with a
CLIP tokenizer written locally. Speed and FLOPs depend only on the architecture, not on the weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import torch

SD2_UNET = {
    "sample_size": 96, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
    "block_out_channels": (320, 640, 1280, 1280), "attention_head_dim": (5, 10, 20, 20),
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "cross_attention_dim": 1024, "use_linear_projection": True,
}
SD2_VAE = {
    "block_out_channels": (128, 256, 512, 512), "layers_per_block": 2, "latent_channels": 4,
    "down_block_types": ("DownEncoderBlock2D",) * 4, "up_block_types": ("UpDecoderBlock2D",) * 4,
    "sample_size": 768,
}
SD2_TEXT = {
    "hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16, "num_hidden_layers": 23,
    "hidden_act": "gelu", "projection_dim": 512, "vocab_size": 49408, "max_position_embeddings": 77,
}
TINY_UNET = {
    "sample_size": 16, "in_channels": 4, "out_channels": 4, "layers_per_block": 1,
    "block_out_channels": (32, 64), "attention_head_dim": (2, 4),
    "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"), "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
    "cross_attention_dim": 32, "use_linear_projection": True,
}
TINY_VAE = {
    "block_out_channels": (32, 64), "layers_per_block": 1, "latent_channels": 4,
    "down_block_types": ("DownEncoderBlock2D",) * 2, "up_block_types": ("UpDecoderBlock2D",) * 2, "sample_size": 32,
}
TINY_TEXT = {
    "hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2,
    "hidden_act": "gelu", "projection_dim": 32, "vocab_size": 1000, "max_position_embeddings": 77,
}
# SD2's noise schedule (v-prediction, as the 768 px model that made the competition's images).
SD2_SCHEDULER = {
    "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "clip_sample": False, "set_alpha_to_one": False, "steps_offset": 1, "prediction_type": "v_prediction",
    "timestep_spacing": "leading",
}
ARCHITECTURES = {"sd2": (SD2_UNET, SD2_VAE, SD2_TEXT), "tiny": (TINY_UNET, TINY_VAE, TINY_TEXT)}


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character table (the alphabet of byte-level BPE)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            chars[byte] = chr(byte)
        else:
            chars[byte] = chr(256 + extra)
            extra += 1
    return chars


def write_clip_tokenizer(folder: str | Path) -> Any:
    """Write a character-level CLIP tokenizer (vocab.json + merges.txt, no merges) and load it back."""
    from transformers import CLIPTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    alphabet = list(_bytes_to_unicode().values())
    tokens = [*alphabet, *(c + "</w>" for c in alphabet), "<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return CLIPTokenizer.from_pretrained(str(folder), model_max_length=77, pad_token="!")


def build_random_pipeline(arch: Literal["sd2", "tiny"], tokenizer_dir: str | Path, seed: int = 0) -> Any:
    """A ``StableDiffusionPipeline`` of architecture ``arch`` with random weights (eval mode, fp32, CPU)."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    unet_cfg, vae_cfg, text_cfg = ARCHITECTURES[arch]
    tokenizer = write_clip_tokenizer(tokenizer_dir)
    special = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
               "pad_token_id": tokenizer.pad_token_id}
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**unet_cfg)
    vae = AutoencoderKL(**vae_cfg)
    text_encoder = CLIPTextModel(CLIPTextConfig(**text_cfg, **special))
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        scheduler=DDIMScheduler(**SD2_SCHEDULER), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )
    for module in (unet, vae, text_encoder):
        module.eval()
    return pipe
