"""Image shards (DESIGN.md contract 2): WebDataset tars plus a manifest of finished shards.

A sample's key is ``<prompt_id>-<k>``; its members are the image (``webp``/``png``/``jpg``), ``json``
(prompt_id, prompt, source, split, seed, generator settings) and ``emb.npy`` (the float32[384] target).
A shard is written to ``<name>.tmp`` and renamed when complete, then recorded in ``manifest.jsonl`` with
its sample count and sha256; readers trust only shards the manifest lists, so a killed writer leaves at
most a stray ``.tmp`` file that the next run overwrites.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from img2prompt.errors import fail
from img2prompt.space import from_npy_bytes, npy_bytes

MANIFEST = "manifest.jsonl"
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


def write_shard(
    path: str | Path,
    samples: Iterable[Sample],
    image_format: str = "webp",
    fast: bool = False,
) -> dict[str, Any]:
    """Write ``samples`` to the tar at ``path`` atomically; returns the manifest entry (not yet recorded).

    Members get a fixed mtime (0), so the tar bytes are a pure function of the samples (reproducible shards).
    """
    import webdataset as wds

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    count = 0
    # A fixed mtime makes a shard a pure function of its samples: reruns give byte-identical tars.
    with tmp.open("wb") as handle, wds.TarWriter(handle, mtime=0.0) as sink:
        for sample in samples:
            sink.write(
                {
                    "__key__": sample.key,
                    image_format: encode_image(sample.image, image_format, fast=fast),
                    "json": json.dumps(sample.meta, sort_keys=True).encode("utf-8"),
                    "emb.npy": npy_bytes(sample.embedding),
                }
            )
            count += 1
        handle.flush()
        os.fsync(handle.fileno())
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    tmp.replace(path)
    return {"shard": path.name, "count": count, "sha256": digest}


class Manifest:
    """The list of finished shards of one output folder; appends are locked, so ranks can share it."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / MANIFEST

    def entries(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        lines = self.path.read_text(encoding="utf-8").splitlines()
        entries = []
        for line_no, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                # A writer killed mid-line leaves a torn last line: that shard is simply not finished.
                if line_no != len(lines):
                    raise fail(self.path, f"line {line_no}: not JSON") from None
        return entries

    def finished(self) -> set[str]:
        return {entry["shard"] for entry in self.entries()}

    def record(self, entry: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.write(json.dumps(entry, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
            fcntl.flock(handle, fcntl.LOCK_UN)

    def shard_paths(self) -> list[Path]:
        """Finished shards, sorted by name; a listed shard that is missing on disk is an error."""
        paths = sorted(self.folder / name for name in self.finished())
        for path in paths:
            if not path.exists():
                raise fail(path, f"listed in {self.path} but missing")
        return paths

    def total(self) -> int:
        return sum(int(entry["count"]) for entry in self.entries())


def is_shards(source: str | Path) -> bool:
    """A shard folder (it has a manifest) or one shard tar: what predict, evaluate and ensemble accept beside
    image files and prompt tables."""
    source = Path(source)
    return (source / MANIFEST).is_file() or (source.suffix == ".tar" and source.is_file())


def find_shards(source: str | Path) -> list[Path]:
    """Shards of a folder (through its manifest) or of a single tar file."""
    source = Path(source)
    if source.is_dir():
        paths = Manifest(source).shard_paths()
        if not paths:
            raise fail(source, f"no finished shards (no entries in {MANIFEST})")
        return paths
    if source.suffix == ".tar" and source.exists():
        return [source]
    raise fail(source, "not a shard folder or .tar file")


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
    import tarfile

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


def iter_records(paths: Iterable[str | Path]) -> Iterator[dict[str, Any]]:
    """Raw WebDataset records (bytes per member, ``__key__``, ``__url__``) of tar files, in order; a damaged tar
    is a one-line error naming it."""
    import tarfile

    import webdataset as wds

    for path in paths:
        try:
            yield from wds.tarfile_to_samples()([{"url": str(path)}])
        except (tarfile.TarError, OSError, ValueError) as exc:
            raise fail(path, f"unreadable shard ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") \
                from None


def iter_samples(paths: Iterable[str | Path]) -> Iterator[Sample]:
    """Read samples in order from tar files (no shuffling: training builds its own pipeline)."""
    for raw in iter_records(paths):
        yield decode_sample(raw)
