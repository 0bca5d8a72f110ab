"""The training index: ``ShardIndex`` loads every shard's index file (``shards.shard_index``): per sample its
prompt hash, ``k``, split, source and byte range in its tar, 29 bytes in RAM. Targets stay in the tars and are read
with their sample; the constant-mean baseline comes from each shard's summed targets. Every start checks each
shard's size (a stat); sha256 is checked when a shard's index is built, and at every start with ``verify: sha256``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from img2prompt.errors import fail
from img2prompt.shards import (
    ShardColumns,
    index_path,
    sha256_file,
    shard_entries,
    shard_index,
)
from img2prompt.space import EMBEDDING_DIM


@dataclass
class ShardIndex:
    """Every sample of a set of shards, as columns: no image and no target is held, 29 bytes per sample."""

    urls: list[str]
    shards: list[str]  # "<name> <sha256> <count>" of each shard: what the fingerprint hashes
    starts: np.ndarray  # int64[len(urls) + 1]: shard s holds rows starts[s]:starts[s + 1]
    pid: np.ndarray  # uint64 prompt hash
    k: np.ndarray  # uint16
    split: np.ndarray  # uint8 code into ``splits``
    source: np.ndarray  # uint16 code into ``sources``
    offset: np.ndarray  # uint64 byte offset in its tar
    size: np.ndarray  # uint32 bytes
    images: np.ndarray  # uint16: images of the sample's prompt in this index
    image_rank: np.ndarray  # uint16: its place among them by k (0: the first image)
    splits: list[str]
    sources: list[str]
    sums: np.ndarray  # float64[len(splits), 384] summed targets per split

    ROWS = ("pid", "k", "split", "source", "offset", "size", "images", "image_rank")

    @classmethod
    def build(cls, sources: list[str | Path], *, splits: Collection[str] | None = None,
              verify: Literal["size", "sha256"] = "size", rank: int = 0, world_size: int = 1) -> ShardIndex:
        """Index the shards of ``sources`` (keeping only the rows of ``splits`` when given).

        Shards without an index file (written before they existed) get one first; ranks start at different shards,
        so each is mostly built once, by the first rank to reach it, and found on disk by the others.
        """
        entries = [pair for source in sources for pair in shard_entries(source)]
        start = rank * len(entries) // max(world_size, 1)
        built: dict[Path, ShardColumns] = {}  # hashed and checked against the manifest as they were built
        for path, entry in entries[start:] + entries[:start]:
            if not index_path(path).exists():
                built[path] = shard_index(path, entry)
        gathered = _Gather(splits)
        for i, (path, entry) in enumerate(entries):
            shard = built.pop(path, None)
            if shard is None:
                shard = shard_index(path, entry)
                if verify == "sha256" and i % max(world_size, 1) == rank and sha256_file(path) != shard.meta["sha256"]:
                    raise fail(path, "sha256 differs from the one recorded when it was written: damaged or replaced")
            gathered.add(shard)
        return gathered.index([str(path) for path, _ in entries])

    def __len__(self) -> int:
        return len(self.pid)

    def nbytes_per_sample(self) -> float:
        """RAM of the per-sample columns, in bytes per sample."""
        return sum(getattr(self, name).nbytes for name in self.ROWS) / max(len(self), 1)

    def fingerprint(self) -> str:
        """What a resumed run must find again: the same shards with the same bytes, in the same order."""
        return hashlib.sha256("\n".join(self.shards).encode("utf-8")).hexdigest()

    def rows_of(self, split: str) -> np.ndarray:
        """Boolean mask of the rows of ``split``."""
        if split not in self.splits:
            return np.zeros(len(self), dtype=bool)
        return self.split == self.splits.index(split)

    def first_images(self, split: str) -> np.ndarray:
        """Rows of the first image (smallest k) of every prompt of ``split``, in shard order."""
        return np.flatnonzero(self.rows_of(split) & (self.image_rank == 0))

    def mean_embedding(self, split: str) -> np.ndarray:
        """The constant baseline: the normalised mean target of a split (from the shards' summed targets)."""
        count = int(self.rows_of(split).sum())  # 0 for a split the shards do not have
        if not count:
            raise fail(self.urls[0] if self.urls else "shards", f"no samples with split {split!r}")
        mean = self.sums[self.splits.index(split)] / count
        return (mean / np.linalg.norm(mean)).astype(np.float32)

    def shard_of(self, rows: np.ndarray) -> np.ndarray:
        return (np.searchsorted(self.starts, rows, side="right") - 1).astype(np.int32)


class _Gather:
    """The columns of an index, gathered shard by shard (codes into splits and sources in order of appearance).

    Every ``COMPACT`` shards the pieces are joined: thousands of small per-shard arrays, once freed, would stay in the
    heap as resident memory (measured: 67 bytes a sample instead of 29 at 10.6M samples).
    """

    COMPACT = 256

    def __init__(self, keep: Collection[str] | None):
        self.keep = keep
        self.splits: dict[str, int] = {}
        self.sources: dict[str, int] = {}
        self.sums: dict[str, np.ndarray] = {}
        self.parts: dict[str, list[np.ndarray]] = {name: [] for name in ShardColumns.ROWS}
        self.counts: list[int] = []
        self.shards: list[str] = []

    def add(self, shard: ShardColumns) -> None:
        meta = shard.meta
        splits = np.array([self.splits.setdefault(name, len(self.splits)) for name in meta["splits"]], np.uint8)
        sources = np.array([self.sources.setdefault(name, len(self.sources)) for name in meta["sources"]], np.uint16)
        for name, total in zip(meta["splits"], shard.sums, strict=True):
            self.sums[name] = self.sums.get(name, 0.0) + total
        split = splits[shard.split]
        rows = slice(None) if self.keep is None else np.isin(split, [self.splits[n] for n in self.keep
                                                                      if n in self.splits])
        for name, column in (("split", split), ("source", sources[shard.source]), ("pid", shard.pid),
                             ("k", shard.k), ("offset", shard.offset), ("size", shard.size)):
            self.parts[name].append(np.ascontiguousarray(column[rows]))
        self.counts.append(len(self.parts["pid"][-1]))
        self.shards.append(f"{meta['shard']} {meta['sha256']} {meta['count']}")
        if len(self.parts["pid"]) >= self.COMPACT:
            self.parts = {name: [np.concatenate(pieces)] for name, pieces in self.parts.items()}

    def index(self, urls: list[str]) -> ShardIndex:
        arrays = {name: np.concatenate(self.parts.pop(name)) for name in ShardColumns.ROWS}
        images, image_rank = _images_of_prompts(arrays["pid"], arrays["k"])
        sums = np.array([self.sums[name] for name in self.splits], dtype=np.float64).reshape(-1, EMBEDDING_DIM)
        return ShardIndex(urls, self.shards, np.concatenate([[0], np.cumsum(self.counts, dtype=np.int64)]),
                          **arrays, images=images, image_rank=image_rank, splits=list(self.splits),
                          sources=list(self.sources), sums=sums)


def _images_of_prompts(pid: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row: how many images its prompt has in the index, and its place among them by k (temporaries of
    ~25 bytes a row)."""
    n = len(pid)
    order = np.lexsort((k, pid))
    ordered = pid[order]
    first_of_group = np.ones(n, dtype=bool)
    np.not_equal(ordered[1:], ordered[:-1], out=first_of_group[1:])
    del ordered
    group = np.cumsum(first_of_group, dtype=np.int32) - 1
    first = np.flatnonzero(first_of_group).astype(np.int32)
    images, image_rank = np.empty(n, np.uint16), np.empty(n, np.uint16)
    images[order] = np.diff(np.append(first, n)).astype(np.uint16)[group]
    image_rank[order] = np.arange(n, dtype=np.int32) - first[group]
    return images, image_rank
