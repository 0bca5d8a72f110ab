"""The index beside each shard, ``<name>.idx.npz``: training reads a shard without reading an image.

Per sample its prompt (a 64-bit hash of the prompt_id), ``k``, split and source codes and the byte range of its
members in the tar, plus the summed targets of each split and the sha256 and size of the tar it describes.
``write_shard`` writes it; a shard without one (written before index files existed) gets it built once, then cached
(``shard_index``)."""

from __future__ import annotations

import hashlib
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from img2prompt.errors import fail
from img2prompt.files import atomic_path
from img2prompt.shards.records import record_embedding, record_meta
from img2prompt.space import EMBEDDING_DIM

INDEX_SUFFIX = ".idx.npz"

INDEX_VERSION = 1

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
