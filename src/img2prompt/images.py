"""Image I/O shared by every stage: any PIL-readable file in, RGB out, bad files rejected by name.

Every stage (generation checks, training, prediction, serving) opens images through ``load_image`` so a
corrupt upload and a corrupt training file fail the same way: one line naming the file.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from img2prompt.errors import Img2PromptError, fail

# 64 MP is 8x the largest image any stage needs (768x768 SD2 output, 336px crops); larger is a bomb.
DEFAULT_MAX_PIXELS = 64_000_000
# Preprocessing scales the shorter side to the model's size, so the longer side grows by the same factor: a
# 1 x 16,000,000 PNG is only 62 KB but would become billions of pixels. The one bound, checked wherever images
# enter (predict, serve, train, evaluate all decode through load_image): the longer side may be at most this
# many times the shorter (panoramas pass; SD images are square).
MAX_ASPECT = 10
# The longest image side a config may ask for (generated images, model inputs): SD2 draws 768, CLIP-like models take
# 224-448; 4096 keeps a typo (size: 100000) from allocating terabytes.
MAX_SIDE = 4096
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def load_image(
    source: str | Path | bytes, *, name: str | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Image.Image:
    """Decode ``source`` (a path or raw bytes) fully into an RGB image.

    Raises ``Img2PromptError`` naming ``name`` (or the path) for zero-byte, unreadable, truncated and
    oversized (decompression-bomb) images. The pixel check runs before decoding, so a bomb costs nothing.
    """
    label = name or (str(source) if not isinstance(source, bytes) else "<upload>")
    try:
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
    except OSError as exc:
        raise fail(label, f"cannot read file ({exc.strerror or exc})") from None
    if not data:
        raise fail(label, "empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            check_size(*image.size, label=label, max_pixels=max_pixels)
            image.load()
    except Img2PromptError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise fail(label, f"image too large (decompression bomb: {exc})") from None
    except UnidentifiedImageError:
        raise fail(label, "not a readable image") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise fail(label, f"corrupt or truncated image ({exc})") from None
    return to_rgb(image)


def check_size(width: int, height: int, *, label: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """Refuse, before any decoding, images with too many pixels or a longer side beyond ``MAX_ASPECT`` times
    the shorter (including a zero side)."""
    if width * height > max_pixels:
        raise fail(label, f"image too large ({width}x{height} > {max_pixels:,} pixels)")
    if min(width, height) < 1 or max(width, height) > MAX_ASPECT * min(width, height):
        raise fail(label, f"image {width}x{height} is too elongated (the longer side may be at most "
                          f"{MAX_ASPECT}x the shorter)")


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB; transparency is composited on white, as a viewer would show it."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit greyscale: scale to 8 bits instead of PIL's clipping conversion.
        import numpy as np

        array = np.asarray(image, dtype=np.float64)
        peak = array.max() if array.size and array.max() > 0 else 1.0
        return Image.fromarray((array / peak * 255.0).round().astype("uint8"), "L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def list_images(inputs: list[str | Path]) -> list[Path]:
    """Expand files, folders (recursively) and globs into a de-duplicated list of image paths.

    A named file is kept whatever its suffix (it is the user's choice); folders and globs keep image files only,
    so ``photos/*`` does not send notes.txt to the model.
    """
    found: dict[Path, None] = {}
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            matches = sorted(p for p in path.rglob("*") if _is_image_file(p))
            if not matches:
                raise fail(path, f"no image files in this folder ({', '.join(IMAGE_SUFFIXES)})")
        elif path.exists():
            matches = [path]
        else:
            pattern = Path(path.anchor).glob(str(path.relative_to(path.anchor))) if path.is_absolute() else (
                Path().glob(str(item)))
            matches = sorted(p for p in pattern if _is_image_file(p))
            if not matches:
                raise fail(item, "no such file or folder, and no image file matches it as a glob")
        for match in matches:
            found.setdefault(match, None)
    return list(found)


def _is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
