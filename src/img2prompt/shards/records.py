"""One sample of a shard (DESIGN.md contract 2): key ``<prompt_id>-<k>``, the image (``webp``/``png``/``jpg``),
``json`` (prompt_id, prompt, source, split, seed, generator settings) and ``emb.npy`` (the float32[384] target);
how a sample is encoded and how a raw record (bytes per member) is read back (a bad sample is one line naming
it)."""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from img2prompt.errors import fail
from img2prompt.space import from_npy_bytes

IMAGE_EXTENSIONS = ("webp", "png", "jpg")

@dataclass(frozen=True)
class Sample:
    """One training example: an image, its metadata and the target embedding of its prompt."""

    key: str
    image: Image.Image
    meta: dict[str, Any]
    embedding: np.ndarray

def sample_key(prompt_id: str, k: int) -> str:
    return f"{prompt_id}-{k}"

def encode_image(image: Image.Image, fmt: str, fast: bool = False) -> bytes:
    """Encode losslessly for ``webp``/``png``; JPEG at quality 95 (the only lossy choice, by request).

    ``fast`` trades WebP file size for speed (effort 0: ~50x faster, ~35% larger, still lossless).
    """
    buffer = io.BytesIO()
    if fmt == "webp":
        effort = {"quality": 0, "method": 0} if fast else {"quality": 100, "method": 4}
        image.save(buffer, format="WEBP", lossless=True, **effort)
    elif fmt == "png":
        image.save(buffer, format="PNG", compress_level=1)
    elif fmt == "jpg":
        image.save(buffer, format="JPEG", quality=95)
    else:
        raise ValueError(f"unknown image format {fmt!r}; use one of {IMAGE_EXTENSIONS}")
    return buffer.getvalue()

def _where(raw: dict[str, Any]) -> str:
    return f"{raw.get('__url__', 'shard')}:{raw['__key__']}"

def record_image(raw: dict[str, Any]) -> Image.Image:
    """The RGB image of a raw WebDataset record (bytes per member); a missing or bad image names the sample."""
    from img2prompt.images import load_image

    fmt = next((ext for ext in IMAGE_EXTENSIONS if ext in raw), None)
    if fmt is None:
        raise fail(_where(raw), "sample has no image member")
    return load_image(raw[fmt], name=f"{_where(raw)}.{fmt}")

def record_embedding(raw: dict[str, Any]) -> np.ndarray:
    """The float32[384] target of a raw record."""
    if "emb.npy" not in raw:
        raise fail(_where(raw), "sample has no emb.npy target")
    return from_npy_bytes(raw["emb.npy"], f"{_where(raw)}.emb.npy")

def record_meta(raw: dict[str, Any]) -> dict[str, Any]:
    """The ``json`` member of a raw record (prompt_id, prompt, source, split, seed, generator settings)."""
    try:
        meta = json.loads(raw["json"])
    except (KeyError, ValueError) as exc:
        raise fail(_where(raw), f"sample has no readable json member ({exc})") from None
    if not isinstance(meta, dict):
        raise fail(_where(raw), "sample json is not an object")
    return meta

def decode_sample(raw: dict[str, Any]) -> Sample:
    """Turn a raw WebDataset record into a ``Sample``."""
    return Sample(key=raw["__key__"], image=record_image(raw), meta=record_meta(raw), embedding=record_embedding(raw))

@dataclass(frozen=True)
class Label:
    """What a sample says about itself without its image: key, ``json`` metadata and the target."""

    key: str
    meta: dict[str, Any]
    embedding: np.ndarray

def read_labels(path: str | Path) -> list[Label]:
    """The labels of every sample of one tar, reading only its small members (image bytes are seeked over)."""
    from webdataset.tariterators import base_plus_ext

    path = Path(path)
    metas: dict[str, dict[str, Any]] = {}
    embeddings: dict[str, np.ndarray] = {}
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                key, ext = base_plus_ext(member.name)  # the grouping rule webdataset itself uses
                if ext == "json":
                    metas[key] = record_meta({"__url__": str(path), "__key__": key,
                                              "json": tar.extractfile(member).read()})
                elif ext == "emb.npy":
                    embeddings[key] = from_npy_bytes(tar.extractfile(member).read(), f"{path}:{key}.emb.npy")
    except (tarfile.TarError, OSError) as exc:
        raise fail(path, f"unreadable shard ({exc})") from None
    missing = next((key for key in metas if key not in embeddings), None)
    if missing is not None:
        raise fail(path, f"sample {missing} has no emb.npy target")
    return [Label(key, meta, embeddings[key]) for key, meta in metas.items()]
