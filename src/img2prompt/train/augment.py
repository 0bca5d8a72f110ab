"""BLIP-2's default training augmentation, built from torchvision.

The 1st place trained its CLIP models without augmentation and BLIP-2 with "the default augmentation": BLIP-2's
own training code (Salesforce LAVIS, processor ``blip_image_train``, used by every BLIP-2 pre-training config)
runs ``RandomResizedCrop(size, scale=(0.5, 1), bicubic)``, ``RandomHorizontalFlip()``, then
``RandomAugment(2, 5, isPIL=True, augs=[...ten operations...])``. The first two are torchvision's own
(``AugmentConfig.min_crop_scale`` and ``hflip``); ``RandAugment`` here is the third, with LAVIS's operations,
magnitudes and odds.
"""

from __future__ import annotations

import math

import torch
from PIL import Image

# LAVIS's list, in its order. Each draw picks one (with replacement) and applies it with probability 0.5.
OPERATIONS = ("Identity", "AutoContrast", "Brightness", "Sharpness", "Equalize", "ShearX", "ShearY", "TranslateX",
              "TranslateY", "Rotate")
# Magnitude 5 of LAVIS's 10, through its level-to-argument formulas: shear factor 0.3 * 5/10, translation
# 10 * 5/10 pixels, rotation 30 * 5/10 degrees, each with a random sign, uncovered pixels grey (128).
# Brightness and Sharpness scale by (5/10) * 1.8 + 0.1 = 1.0 at this magnitude: LAVIS's draw of them changes
# nothing, and they stay in the list so the other operations keep LAVIS's odds.
SHEAR_DEGREES = math.degrees(math.atan(0.15))
TRANSLATE_PIXELS = 5
ROTATE_DEGREES = 15.0
GREY = [128.0, 128.0, 128.0]


class RandAugment:
    """LAVIS's ``RandomAugment(ops, 5)`` on a PIL image; draws come from torch's RNG (seeded per loader worker)."""

    def __init__(self, ops: int):
        self.ops = ops

    def __call__(self, image: Image.Image) -> Image.Image:
        for _ in range(self.ops):
            name = OPERATIONS[int(torch.randint(len(OPERATIONS), ()))]
            if torch.rand(()) < 0.5:
                sign = 1.0 if torch.rand(()) < 0.5 else -1.0
                image = apply(name, image, sign)
        return image

    def __repr__(self) -> str:
        return f"RandAugment(ops={self.ops}, magnitude=5, LAVIS blip_image_train)"


def apply(name: str, image: Image.Image, sign: float) -> Image.Image:
    """One of LAVIS's operations at magnitude 5; ``sign`` (+1 or -1) is the direction of the geometric ones."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as F

    bilinear = InterpolationMode.BILINEAR  # cv2.warpAffine's default, which LAVIS uses
    if name == "AutoContrast":
        return F.autocontrast(image)
    if name == "Equalize":
        return F.equalize(image)
    if name in ("ShearX", "ShearY"):  # LAVIS shears about the top-left corner
        shear = [sign * SHEAR_DEGREES, 0.0] if name == "ShearX" else [0.0, sign * SHEAR_DEGREES]
        return F.affine(image, angle=0.0, translate=[0, 0], scale=1.0, shear=shear, interpolation=bilinear,
                        fill=GREY, center=[0, 0])
    if name in ("TranslateX", "TranslateY"):
        shift = int(sign * TRANSLATE_PIXELS)
        translate = [shift, 0] if name == "TranslateX" else [0, shift]
        return F.affine(image, angle=0.0, translate=translate, scale=1.0, shear=[0.0, 0.0], interpolation=bilinear,
                        fill=GREY)
    if name == "Rotate":
        return F.rotate(image, sign * ROTATE_DEGREES, interpolation=bilinear, fill=GREY)
    return image  # Identity, and Brightness and Sharpness at factor 1.0
