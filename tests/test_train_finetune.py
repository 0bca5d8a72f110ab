"""Fine-tuning options on their own, each in seconds: fp16 refused without CUDA, the EMA is what gets validated
and saved, the MSE term of the loss, each augmentation, and gradient checkpointing that really recomputes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from img2prompt.errors import Img2PromptError
from img2prompt.models.backbones import REGISTRY
from img2prompt.models.heads import cosine_loss
from img2prompt.models.regressor import ModelConfig, Regressor, build_transform
from img2prompt.train import augment
from img2prompt.train.config import TrainConfig
from img2prompt.train.data import AugmentConfig, build_train_transform
from img2prompt.train.index import ShardIndex
from img2prompt.train.state import STATE_NAME
from img2prompt.train.trainer import train
from img2prompt.train.validation import validate
from test_train_data import make_color_shards


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_color_shards(tmp_path_factory.mktemp("shards"), n_prompts=60, size=32)


def config(shards: Path, out: Path, **extra) -> TrainConfig:
    return TrainConfig.model_validate({
        "out": str(out), "seed": 0, "log_with": [], "plots": False,
        "model": {"backbone": "efficientnet_lite0", "pretrained": False, "tiny": True, "image_size": 32},
        "data": {"shards": [str(shards)], "batch_size": 8, "shuffle_buffer": 16},
        "optim": {"lr": 1e-2, "epochs": 1, "max_steps": 4, "weight_decay": 0.0},
        **extra,
    })


def test_fp16_without_cuda_is_a_config_error(shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(Img2PromptError) as info:
        train(config(shards, tmp_path / "run", precision="fp16"))
    message = str(info.value)
    assert message.startswith("train.precision: fp16 needs a CUDA GPU") and "\n" not in message
    assert not (tmp_path / "run").exists()


def test_with_ema_the_ema_weights_are_validated_and_saved(shards: Path, tmp_path: Path) -> None:
    # timm's EMA copies the weights for its first two updates, so 4 steps leave EMA != raw weights.
    cfg = config(shards, tmp_path / "run", finetune={"ema_decay": 0.5})
    run = train(cfg)
    state = torch.load(run / STATE_NAME, map_location="cpu", weights_only=True)
    saved = Regressor.from_pretrained(run)
    for key, value in saved.state_dict().items():
        assert torch.equal(value, state["ema"][key]), key
    assert any(not torch.equal(state["ema"][key], state["model"][key]) for key in state["model"])

    raw = Regressor(cfg.model, pretrained=False)
    raw.load_state_dict(state["model"])
    index = ShardIndex.build([shards])
    device = torch.device("cpu")
    reported = json.loads((run / "metrics.json").read_text())["val_mean_cosine"]
    ema_score = validate(saved, index, "val", 64, device)["val_mean_cosine"]
    raw_score = validate(raw.eval(), index, "val", 64, device)["val_mean_cosine"]
    assert reported == pytest.approx(ema_score, abs=1e-6)
    assert abs(raw_score - ema_score) > 1e-4


def test_mse_weight_adds_the_mean_squared_error_of_the_unit_vectors() -> None:
    pred = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    target = torch.tensor([[3.0, 4.0], [0.0, 2.0]])  # unit: (0.6, 0.8) and (0, 1)
    # 1 - mean cosine = 1 - (0.6 + 1) / 2 = 0.2; MSE over all elements = (0.16 + 0.64 + 0 + 0) / 4 = 0.2
    assert cosine_loss(pred, target).item() == pytest.approx(0.2, abs=1e-6)
    assert cosine_loss(pred, target, mse_weight=0.5).item() == pytest.approx(0.2 + 0.5 * 0.2, abs=1e-6)
    assert cosine_loss(pred, target, mse_weight=2.0).item() == pytest.approx(0.2 + 2.0 * 0.2, abs=1e-6)


def probe_image() -> Image.Image:
    """A left-right and colour asymmetric picture, so a flip, crop or jitter always shows."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(48, 64, 3)).astype(np.uint8)
    pixels[:, :20] = (230, 40, 40)
    return Image.fromarray(pixels, "RGB")


def transformed(augment: AugmentConfig, seed: int) -> torch.Tensor:
    transform = build_train_transform(32, (0.5,) * 3, (0.5,) * 3, augment)
    torch.manual_seed(seed)
    return transform(probe_image())


def test_augmentation_is_off_by_default_and_each_option_changes_the_pixels() -> None:
    plain = transformed(AugmentConfig(), 0)
    assert plain.shape == (3, 32, 32)
    torch.testing.assert_close(plain, build_transform(32, (0.5,) * 3, (0.5,) * 3)(probe_image()), rtol=0, atol=0)
    for seed in range(1, 6):
        torch.testing.assert_close(transformed(AugmentConfig(), seed), plain, rtol=0, atol=0)
    for option in ({"hflip": True}, {"min_crop_scale": 0.5}, {"color_jitter": 0.4}, {"rand_augment": 2}):
        outputs = [transformed(AugmentConfig(**option), seed) for seed in range(8)]
        assert all(out.shape == plain.shape for out in outputs)
        assert any(not torch.equal(out, plain) for out in outputs), option


def test_blip2_rand_augment_runs_lavis_operations_at_magnitude_5() -> None:
    image = probe_image()
    pixels = np.asarray(image)
    grey = np.array([128, 128, 128], dtype=np.uint8)

    def op(name: str, sign: float = 1.0) -> np.ndarray:
        out = augment.apply(name, image, sign)
        assert out.size == image.size and out.mode == "RGB"
        return np.asarray(out)

    for name in ("Identity", "Brightness", "Sharpness"):  # factor (5 / 10) * 1.8 + 0.1 = 1.0: no change
        assert np.array_equal(op(name), pixels)
    assert np.array_equal(op("AutoContrast"), np.asarray(ImageOps.autocontrast(image)))
    assert np.array_equal(op("Equalize"), np.asarray(ImageOps.equalize(image)))
    # 5 pixels of translation, the uncovered strip grey
    assert np.array_equal(op("TranslateX")[:, 5:], pixels[:, :-5]) and (op("TranslateX")[:, :5] == grey).all()
    assert np.array_equal(op("TranslateY", -1.0)[:-5], pixels[5:]) and (op("TranslateY", -1.0)[-5:] == grey).all()
    # A 0.15 shear about the top-left corner, as LAVIS's cv2.warpAffine: on a horizontal ramp (4 levels a pixel),
    # row y slides by 0.15 y pixels (to a quarter pixel: PIL samples pixel centres, cv2 pixel corners).
    ramp = np.zeros((48, 64, 3), dtype=np.uint8)
    ramp[..., 0] = 4 * np.arange(64)
    for sign in (1.0, -1.0):
        sheared = np.asarray(augment.apply("ShearX", Image.fromarray(ramp), sign)).astype(float)
        for y in (0, 10, 47):
            slide = (sheared[y, 20:40, 0] - ramp[y, 20:40, 0]) / 4
            assert np.abs(slide - sign * 0.15 * y).max() <= 0.3
    rotated = op("Rotate")  # 15 degrees about the centre: the corners turn grey
    assert all((rotated[y, x] == grey).all() for y, x in ((0, 0), (0, -1), (-1, 0), (-1, -1)))
    # Two draws, each applied with probability 0.5, three of the ten operations leaving this image as it is:
    # it comes out unchanged with probability (0.5 + 0.5 * 3 / 10) ** 2 = 0.42.
    rand_augment = augment.RandAugment(2)
    torch.manual_seed(0)
    unchanged = sum(np.array_equal(np.asarray(rand_augment(image)), pixels) for _ in range(400))
    assert unchanged / 400 == pytest.approx(0.4225, abs=0.06)


def one_step(model: Regressor, pixels: torch.Tensor) -> tuple[int, torch.Tensor, list[torch.Tensor]]:
    """Module calls in the backbone over one forward + backward, the loss, and the gradients."""
    calls = 0

    def count(*_) -> None:
        nonlocal calls
        calls += 1

    # Pre-hooks on every submodule: transformers checkpoints a layer's forward inside its __call__, and torch
    # stops a recomputation early once it has the saved tensors, so only the starts of inner calls are certain.
    handles = [module.register_forward_pre_hook(count) for module in model.backbone.modules()]
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)  # same dropout/drop-connect draws on both passes
    loss = cosine_loss(model(pixels), torch.ones(pixels.shape[0], 384))
    loss.backward()
    for handle in handles:
        handle.remove()
    grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    return calls, loss.detach(), grads


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_gradient_checkpointing_recomputes_blocks_with_the_same_gradients(name: str) -> None:
    torch.manual_seed(0)
    model = Regressor(ModelConfig(backbone=name, pretrained=False, tiny=True)).train()
    pixels = torch.randn(2, 3, model.image_size, model.image_size, generator=torch.Generator().manual_seed(2))
    calls_off, loss_off, grads_off = one_step(model, pixels)
    model.set_grad_checkpointing(True)
    calls_on, loss_on, grads_on = one_step(model, pixels)
    # Checkpointed blocks run again in the backward pass; without checkpointing nothing does.
    assert calls_on > calls_off
    torch.testing.assert_close(loss_on, loss_off, rtol=1e-5, atol=1e-6)
    assert len(grads_on) == len(grads_off) > 0
    for on, off in zip(grads_on, grads_off, strict=True):
        torch.testing.assert_close(on, off, rtol=1e-4, atol=1e-6)
