"""The evaluation transform without torchvision gives torchvision's pixels bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from img2prompt.models.backbones import LITE_MEAN, LITE_STD, OPENAI_MEAN, OPENAI_STD
from img2prompt.models.regressor import build_transform

SIZES = [(1, 1), (2, 3), (4, 300), (300, 4), (517, 311), (311, 517), (224, 224), (225, 224), (224, 225),
         (640, 480), (333, 335)]
MODES = ["RGB", "RGBA", "L", "LA", "P", "1", "I;16", "I", "F", "CMYK", "YCbCr"]


def torchvision_transform(size: int, mean: tuple[float, ...], std: tuple[float, ...]):
    from torchvision import transforms as T

    return T.Compose([T.Resize(size, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(size), T.ToTensor(),
                      T.Normalize(mean, std)])


def picture(width: int, height: int, mode: str, seed: int) -> Image.Image:
    """Noise with a gradient (so resampling has edges and smooth parts to get wrong), in ``mode``."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    pixels[..., 0] = np.linspace(0, 255, width, dtype=np.uint8)[None, :]
    image = Image.fromarray(pixels, "RGB")
    if mode in ("I;16", "I", "F"):
        return Image.fromarray((rng.random((height, width)) * 255).astype(np.float32), "F").convert(mode)
    return image.convert(mode)


@pytest.mark.parametrize("size", [224, 37])
def test_every_size_matches_torchvision_exactly(size: int) -> None:
    ours, theirs = build_transform(size, OPENAI_MEAN, OPENAI_STD), torchvision_transform(size, OPENAI_MEAN, OPENAI_STD)
    for seed, (width, height) in enumerate(SIZES):
        image = picture(width, height, "RGB", seed)
        expected = theirs(image)
        got = ours(image)
        assert got.shape == (3, size, size) and got.dtype == torch.float32 and got.is_contiguous()
        assert torch.equal(got, expected), (width, height)


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_matches_torchvision_on_its_rgb_conversion(mode: str) -> None:
    ours, theirs = build_transform(56, LITE_MEAN, LITE_STD), torchvision_transform(56, LITE_MEAN, LITE_STD)
    image = picture(97, 61, mode, seed=len(mode))
    assert image.mode == mode
    assert torch.equal(ours(image), theirs(image.convert("RGB")))
