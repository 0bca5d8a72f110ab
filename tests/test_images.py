"""Image I/O: every PIL mode becomes RGB; corrupt, truncated, empty and bomb images fail by name."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from img2prompt.errors import Img2PromptError
from img2prompt.images import list_images, load_image


def save(image: Image.Image, path, fmt: str = "PNG", **kwargs):
    image.save(path, format=fmt, **kwargs)
    return path


def test_real_kaggle_image(shared_data):
    image = load_image(shared_data / "kaggle_sample" / "images" / "20057f34d.png")
    assert image.mode == "RGB" and image.size == (512, 512)


def test_rgba_is_composited_on_white(tmp_path):
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    rgba.putpixel((0, 0), (255, 0, 0, 255))
    out = load_image(save(rgba, tmp_path / "a.png"))
    assert out.mode == "RGB"
    assert out.getpixel((0, 0)) == (255, 0, 0)
    assert out.getpixel((1, 1)) == (255, 255, 255)


def test_palette_with_transparency(tmp_path):
    palette = Image.new("P", (2, 2), 0)
    palette.putpalette([0, 0, 255] + [0] * 765)
    palette.info["transparency"] = 0
    out = load_image(save(palette, tmp_path / "p.png", transparency=0))
    assert out.getpixel((0, 0)) == (255, 255, 255)


def test_grey_is_converted(tmp_path):
    out = load_image(save(Image.new("L", (3, 3), 128), tmp_path / "grey.png"))
    assert out.mode == "RGB" and out.getpixel((1, 1)) == (128, 128, 128)


def test_cmyk_is_converted(tmp_path):
    out = load_image(save(Image.new("CMYK", (3, 3), (0, 0, 0, 0)), tmp_path / "cmyk.jpg", "JPEG"))
    assert out.mode == "RGB" and min(out.getpixel((1, 1))) > 240  # zero ink is white


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path):
    array = np.array([[0, 32768], [65535, 1000]], dtype=np.uint16)
    out = load_image(save(Image.fromarray(array), tmp_path / "g16.png"))
    assert out.getpixel((0, 0)) == (0, 0, 0)
    assert out.getpixel((0, 1)) == (255, 255, 255)
    assert 120 <= out.getpixel((1, 0))[0] <= 135


def png_bytes(size=(64, 64)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 20, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file"),
        (b"this is not an image at all", "not a readable image"),
        (png_bytes()[:-40], "corrupt or truncated"),
        (png_bytes()[:60], "corrupt or truncated|not a readable"),
    ],
)
def test_bad_files_fail_with_the_name(tmp_path, content, message):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(Img2PromptError, match=message) as info:
        load_image(path)
    assert str(info.value).startswith(str(path))


def test_decompression_bomb_is_rejected_before_decoding(tmp_path, monkeypatch):
    path = save(Image.new("L", (4000, 4000)), tmp_path / "big.png")
    with pytest.raises(Img2PromptError, match="image too large \\(4000x4000"):
        load_image(path, max_pixels=1_000_000)
    # PIL's own bomb check (past 2x its limit, raised from the header alone) gets the same one-line error.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)
    with pytest.raises(Img2PromptError, match="decompression bomb"):
        load_image(path, max_pixels=10**9)


def test_bytes_input_uses_given_name():
    with pytest.raises(Img2PromptError, match=r"^upload\.png: empty file"):
        load_image(b"", name="upload.png")
    assert load_image(png_bytes(), name="ok.png").size == (64, 64)


def test_missing_file(tmp_path):
    with pytest.raises(Img2PromptError, match="cannot read file"):
        load_image(tmp_path / "none.png")


def test_list_images(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("a.png", "sub/b.JPG", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    found = list_images([tmp_path, tmp_path / "a.png"])
    assert [p.name for p in found] == ["a.png", "b.JPG"]
    with pytest.raises(Img2PromptError, match="no such file"):
        list_images([tmp_path / "missing*.png"])


def test_list_images_expands_absolute_and_relative_globs_to_image_files_only(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    (tmp_path / "dir.png").mkdir()  # a folder named like an image is not an image
    for name in ("a.png", "b.webp", "sub/c.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in list_images([str(tmp_path / "*")])] == ["a.png", "b.webp"]
    assert [p.name for p in list_images([str(tmp_path / "**" / "*.jpg")])] == ["c.jpg"]
    monkeypatch.chdir(tmp_path)
    assert list_images(["*.png", "sub/*", "a.png"]) == [Path("a.png"), Path("sub/c.jpg")]
    assert list_images(["notes.txt"]) == [Path("notes.txt")]  # a named file is kept: predict reports it
    with pytest.raises(Img2PromptError, match="no image file matches"):
        list_images(["*.txt"])


def elongated_png(width: int, height: int) -> bytes:
    """A real, tiny PNG of an extreme shape (the 62 KB 1 x 16,000,000 attack compresses to almost nothing)."""
    image = Image.new("L", (width, height), 128)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


@pytest.mark.parametrize(("width", "height"), [(1, 1_000_000), (20, 80_000), (11_000, 1000)])
def test_extreme_aspect_ratios_are_refused_before_decoding(width, height):
    with pytest.raises(Img2PromptError, match=rf"^tall\.png: image {width}x{height} is too elongated") as info:
        load_image(elongated_png(width, height), name="tall.png")
    assert "\n" not in str(info.value)


def test_a_panorama_within_the_bound_loads():
    assert load_image(elongated_png(1000, 100), name="pano.png").size == (1000, 100)
