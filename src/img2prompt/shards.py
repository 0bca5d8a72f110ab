"""Image shards (DESIGN.md contract 2): WebDataset tars plus a manifest of finished shards.

A sample's key is ``<prompt_id>-<k>``; its members are the image (``webp``/``png``/``jpg``), ``json``
(prompt_id, prompt, source, split, seed, generator settings) and ``emb.npy`` (the float32[384] target).
A shard is written to ``<name>.tmp`` and renamed when complete, then recorded in ``manifest.jsonl`` with
its sample count, size and sha256; readers trust only shards the manifest lists, so a killed writer leaves at
most a stray ``.tmp`` file that the next run overwrites.

Beside each shard, ``<name>.idx.npz`` indexes it for training without reading an image: per sample its prompt
(a 64-bit hash of the prompt_id), ``k``, split and source codes and the byte range of its members in the tar,
plus the summed targets of each split and the sha256 and size of the tar it describes. ``write_shard`` writes it;
a shard without one (written before index files existed) gets it built once, then cached (``shard_index``).
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image

from img2prompt.errors import fail
from img2prompt.files import atomic_path, cannot_write, make_folder
from img2prompt.space import EMBEDDING_DIM, from_npy_bytes, npy_bytes

MANIFEST = "manifest.jsonl"
IMAGE_EXTENSIONS = ("webp", "png", "jpg")
INDEX_SUFFIX = ".idx.npz"
INDEX_VERSION = 1


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
    """Write ``samples`` to the tar at ``path`` atomically, and its index beside it; returns the manifest entry
    (not yet recorded).

    Members get a fixed mtime (0), so the tar bytes are a pure function of the samples (reproducible shards).
    The index is built from the bytes just hashed, before the tar takes its name: a finished shard has one.
    """
    import webdataset as wds

    path = Path(path)
    count = 0
    with atomic_path(path) as tmp:
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
        digest = sha256_file(tmp)
        write_index(scan_shard(tmp, digest, name=path.name), index_path(path))
    return {"shard": path.name, "count": count, "bytes": path.stat().st_size, "sha256": digest}


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
        """Append ``entry``; a line torn by a full disk or a kill reads as an unfinished shard."""
        make_folder(self.folder, output=self.path)
        try:
            with self.path.open("a", encoding="utf-8") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                handle.write(json.dumps(entry, sort_keys=True) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
                fcntl.flock(handle, fcntl.LOCK_UN)
        except OSError as exc:
            raise cannot_write(self.path, exc) from None

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
    return [path for path, _ in shard_entries(source)]


def shard_entries(source: str | Path) -> list[tuple[Path, dict[str, Any] | None]]:
    """Shards of a folder with their manifest entries, sorted by name, or a single tar file (no entry)."""
    source = Path(source)
    if source.is_dir():
        manifest = Manifest(source)
        entries = {entry["shard"]: entry for entry in manifest.entries()}
        paths = manifest.shard_paths()
        if not paths:
            raise fail(source, f"no finished shards (no entries in {MANIFEST})")
        return [(path, entries[path.name]) for path in paths]
    if source.suffix == ".tar" and source.exists():
        return [(source, None)]
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


def sha256_file(path: str | Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def prompt_hash(prompt_id: str) -> int:
    """A prompt's 64-bit id in the index: it groups a prompt's images and keys each epoch's choice among them."""
    return int.from_bytes(hashlib.blake2b(prompt_id.encode("utf-8"), digest_size=8).digest(), "little")


def index_path(shard: str | Path) -> Path:
    shard = Path(shard)
    return shard.with_name(shard.name + INDEX_SUFFIX)


@dataclass(frozen=True)
class ShardColumns:
    """The index of one shard: a row per sample (no image, no target), the summed targets of each split
    (the constant-mean baseline without reading a target twice) and ``meta``: version, shard name, bytes,
    sha256 and count of the tar it describes, and the ``splits`` and ``sources`` its codes point into."""

    meta: dict[str, Any]
    pid: np.ndarray  # uint64 prompt_hash(prompt_id)
    k: np.ndarray  # uint16, from the key <prompt_id>-<k>
    split: np.ndarray  # uint8 code into meta["splits"]
    source: np.ndarray  # uint16 code into meta["sources"]
    offset: np.ndarray  # uint64 byte offset of the sample's first member header
    size: np.ndarray  # uint32 bytes of all its members (headers and padding included)
    sums: np.ndarray  # float64[len(splits), 384]

    ROWS = ("pid", "k", "split", "source", "offset", "size")


def scan_shard(path: str | Path, sha256: str, name: str | None = None) -> ShardColumns:
    """Index a tar in one pass over its small members (image bytes are seeked over).

    A damaged header makes tarfile end the archive early without a word, so the bytes after the last sample read
    must be the end-of-archive zeros, or the shard is refused.
    """
    from webdataset.tariterators import base_plus_ext  # the grouping rule webdataset itself uses

    path = Path(path)
    groups: list[dict[str, Any]] = []
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                key, ext = base_plus_ext(member.name)
                if not groups or groups[-1]["key"] != key:
                    groups.append({"key": key, "offset": member.offset})
                group = groups[-1]
                group["end"] = member.offset_data + -(-member.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
                if ext in ("json", "emb.npy"):
                    group[ext] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError) as exc:
        raise fail(path, f"unreadable shard ({exc})") from None
    _check_archive_end(path, groups[-1]["end"] if groups else 0)
    splits: dict[str, int] = {}
    sources: dict[str, int] = {}
    rows, vectors = [], []
    for group in groups:
        where = {"__url__": str(path), "__key__": group["key"]}
        meta = record_meta({**where, "json": group.get("json")})
        if "emb.npy" not in group:
            raise fail(path, f"sample {group['key']} has no emb.npy target")
        vectors.append(record_embedding({**where, "emb.npy": group["emb.npy"]}))
        prompt_id, k = _key_parts(path, group["key"], str(meta["prompt_id"]))
        split = splits.setdefault(str(meta.get("split", "train")), len(splits))
        source = sources.setdefault(str(meta.get("source", "unknown")), len(sources))
        rows.append((prompt_hash(prompt_id), k, split, source, group["offset"], group["end"] - group["offset"]))
    columns = np.array(rows, dtype=np.uint64).reshape(-1, 6).T
    codes = columns[2].astype(np.int64)
    sums = np.zeros((len(splits), vectors[0].shape[0] if vectors else EMBEDDING_DIM))
    if vectors:
        np.add.at(sums, codes, np.stack(vectors).astype(np.float64))
    meta = {"version": INDEX_VERSION, "shard": name or path.name, "bytes": path.stat().st_size, "sha256": sha256,
            "count": len(rows), "splits": list(splits), "sources": list(sources)}
    return ShardColumns(meta, pid=columns[0], k=columns[1].astype(np.uint16), split=columns[2].astype(np.uint8),
                        source=columns[3].astype(np.uint16), offset=columns[4],
                        size=columns[5].astype(np.uint32), sums=sums)


def _key_parts(path: Path, key: str, prompt_id: str) -> tuple[str, int]:
    """(prompt_id, k) of a key that follows the contract ``<prompt_id>-<k>``."""
    stem, _, k = key.rpartition("-")
    if stem != prompt_id or not k.isdigit():
        raise fail(path, f"sample key {key} is not <prompt_id>-<k> for its prompt_id {prompt_id}")
    return prompt_id, int(k)


def _check_archive_end(path: Path, end: int) -> None:
    with path.open("rb") as handle:
        handle.seek(end)
        while chunk := handle.read(1 << 20):
            if any(chunk):
                raise fail(path, f"damaged tar header after byte {end}: the shard cannot be read past it")


def write_index(columns: ShardColumns, path: str | Path) -> None:
    with atomic_path(path) as tmp, tmp.open("wb") as handle:
        save_index(columns, handle)


def save_index(columns: ShardColumns, handle: BinaryIO) -> None:
    """Three npz members: ``meta`` (JSON bytes), ``rows`` (one record per sample), ``sums``: few members load fast."""
    meta = np.frombuffer(json.dumps(columns.meta, sort_keys=True).encode("utf-8"), dtype=np.uint8)
    arrays = [getattr(columns, name) for name in ShardColumns.ROWS]
    rows = np.empty(len(arrays[0]), dtype=[(name, a.dtype) for name, a in zip(ShardColumns.ROWS, arrays, strict=True)])
    for name, array in zip(ShardColumns.ROWS, arrays, strict=True):
        rows[name] = array
    np.savez(handle, meta=meta, rows=rows, sums=columns.sums)


def read_index(path: str | Path) -> ShardColumns | None:
    """A shard's index file, or None when there is none or it has another version (then it is rebuilt)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(data["meta"].tobytes())
            if meta.get("version") != INDEX_VERSION:
                return None
            rows = data["rows"]
            return ShardColumns(meta, **{name: rows[name] for name in ShardColumns.ROWS}, sums=data["sums"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError) as exc:  # a torn or foreign file: rebuilt from the shard
        print(f"{path}: unreadable index ({exc}); rebuilding it")
        return None


def shard_index(path: str | Path, entry: dict[str, Any] | None) -> ShardColumns:
    """The index of a finished shard, checked against its manifest ``entry`` (None for a lone tar).

    Built when it is missing or was made for other bytes (a regenerated shard): the build hashes the whole tar and
    refuses a sha256 or count that differs from the manifest's. Every call checks the size on disk (a stat: a
    truncated or half-copied shard fails here, before training).
    """
    path = Path(path)
    columns = read_index(index_path(path))
    if columns is None or (entry is not None and columns.meta["sha256"] != entry["sha256"]):
        digest = sha256_file(path)
        if entry is not None and digest != entry["sha256"]:
            raise fail(path, f"sha256 {digest[:12]}... differs from the manifest's {entry['sha256'][:12]}...: the "
                             "shard was damaged or replaced after it was written")
        columns = scan_shard(path, digest)
        try:
            write_index(columns, index_path(path))
        except OSError as exc:  # a read-only shard folder: index in memory for this run only
            print(f"{index_path(path)}: not cached ({exc.strerror or exc})")
    expected = entry.get("bytes", columns.meta["bytes"]) if entry is not None else columns.meta["bytes"]
    actual = path.stat().st_size
    if actual != expected:
        raise fail(path, f"{actual} bytes on disk, {expected} when it was written: truncated or replaced")
    if entry is not None and columns.meta["count"] != int(entry["count"]):
        raise fail(path, f"{columns.meta['count']} samples, but the manifest lists {entry['count']}")
    return columns


def read_record(path: str | Path, offset: int, size: int) -> dict[str, Any]:
    """One sample's raw record (bytes per member, ``__key__``, ``__url__``), read by its byte range in the tar."""
    from webdataset.tariterators import group_by_keys, tar_file_expander

    with open(path, "rb") as handle:
        handle.seek(offset)
        data = handle.read(size)
    if len(data) != size:
        raise fail(path, f"truncated: the sample at byte {offset} ends past the end of the file")
    try:
        records = list(group_by_keys(tar_file_expander([{"url": str(path), "stream": io.BytesIO(data)}],
                                                       eof_value=None)))
    except (tarfile.TarError, ValueError, OSError) as exc:
        raise fail(path, f"damaged tar member at byte {offset} ({exc.args[0] if exc.args else exc})") from None
    if len(records) != 1:
        raise fail(path, f"no single sample at byte {offset}: its index does not describe it "
                         f"(delete {index_path(path).name} to rebuild it)")
    return records[0]


def iter_records(paths: Iterable[str | Path]) -> Iterator[dict[str, Any]]:
    """Raw WebDataset records (bytes per member, ``__key__``, ``__url__``) of tar files, in order; a damaged tar
    is a one-line error naming it."""

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
