"""The training data path over WebDataset shards, sized for 10.6M images read by many GPUs.

Index. ``ShardIndex`` loads every shard's index file (``shards.shard_index``): per sample its prompt hash, ``k``,
split, source and byte range in its tar, 29 bytes in RAM. Targets stay in the tars and are read with their sample;
the constant-mean baseline comes from each shard's summed targets. Every start checks each shard's size (a stat);
sha256 is checked when a shard's index is built, and at every start with ``verify: sha256``.

Epoch plan. ``TrainPlan`` is a pure function of the index and (seed, epoch), so every rank computes the same one:
one image per training prompt (a hash of (prompt, seed, epoch) picks it), then the shards in a shuffled order,
each dealt to the least loaded (worker, rank) slot. So every sample is read once per epoch, by one loader worker
of one rank, and the deal changes every epoch. Inside a slot, samples are shuffled in blocks of
``shuffle_buffer``. Every slot trains on as many batches as the smallest one holds, so all ranks take the same
optimizer steps; the bigger slots' extra samples (less than a shard each) are left for another epoch's deal.

Reading. ``TrainStream`` is one rank's share of one epoch: per loader worker, a list of byte ranges read and decoded
in order. A resumed run starts each worker after the batches it trained on, without reading them. A sample whose
image or target does not decode is skipped (``on_bad_sample: skip``) and its batch is one row shorter, never
missing, so the ranks still take the same steps; a damaged tar is an error naming the shard.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import sys
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from img2prompt.config import INPUT, StrictModel
from img2prompt.errors import Img2PromptError, fail
from img2prompt.shards import (
    ShardColumns,
    index_path,
    prompt_hash,
    read_record,
    record_embedding,
    record_image,
    sha256_file,
    shard_entries,
    shard_index,
)
from img2prompt.space import EMBEDDING_DIM
from img2prompt.train.augment import RandAugment

OnBadSample = Literal["skip", "fail"]


class AugmentConfig(StrictModel):
    """Off by default, as the 1st place trained its CLIP models. BLIP-2's default (LAVIS ``blip_image_train``), which
    it trained BLIP-2 with: ``{min_crop_scale: 0.5, hflip: true, rand_augment: 2}`` (``train/augment.py``)."""

    hflip: bool = False
    min_crop_scale: float = Field(1.0, gt=0, le=1)  # < 1 turns on RandomResizedCrop(scale=(min_crop_scale, 1))
    rand_augment: int = Field(0, ge=0, le=14)  # > 0: that many draws of LAVIS's RandomAugment at magnitude 5
    color_jitter: float = Field(0.0, ge=0, le=1)  # brightness, contrast and saturation factors within 1 +- this


class DataConfig(StrictModel):
    # shard folders (with manifest.jsonl) or .tar files
    shards: Annotated[list[str], INPUT] = Field(default_factory=list)
    # empty: validate on the ``val`` split of ``shards``
    val_shards: Annotated[list[str], INPUT] = Field(default_factory=list)
    batch_size: int = Field(32, ge=1)
    shuffle_buffer: int = Field(1000, ge=1)  # samples shuffled together inside each (worker, rank) slot's epoch
    num_workers: int = Field(0, ge=0, le=256)  # loader processes per rank (0: load in the training process)
    # A sample whose image or target does not decode: skipped (one log line, counted in metrics.json) or fatal.
    on_bad_sample: OnBadSample = "skip"
    max_bad_share: float = Field(0.001, ge=0.0, le=1.0)  # more bad samples in a rank's epoch than this fails the run
    # Checked at every start. size: a stat per shard (sha256 is checked when a shard is first indexed). sha256: each
    # rank also hashes its share of the shards (~1 s per GB per core: ~8 min a rank for 4 TB over 8 ranks).
    verify: Literal["size", "sha256"] = "size"
    augment: AugmentConfig = AugmentConfig()


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


def _stable_int(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:8], "little")


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a well-spread 64-bit hash of each element (uint64 arithmetic wraps)."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@dataclass(frozen=True)
class Deal:
    """One epoch's shards of every slot (slot = worker * world_size + rank), in reading order."""

    shards: list[list[int]]
    samples: list[int]  # chosen samples each slot holds
    batches: int  # batches every slot trains on: the smallest slot's
    batch_size: int

    @property
    def left_out(self) -> int:
        """Chosen samples no slot trains on this epoch: the bigger slots' tails and each slot's last partial batch."""
        return sum(self.samples) - len(self.samples) * self.batches * self.batch_size


@dataclass(frozen=True)
class Reads:
    """Byte ranges to read in order, and the sample each must hold (so a stale index fails instead of misleading)."""

    urls: list[str]
    shard: np.ndarray  # int32 into urls
    offset: np.ndarray
    size: np.ndarray
    pid: np.ndarray
    k: np.ndarray

    @classmethod
    def of(cls, index: ShardIndex, rows: np.ndarray) -> Reads:
        return cls(index.urls, index.shard_of(rows), index.offset[rows], index.size[rows], index.pid[rows],
                   index.k[rows])

    def __len__(self) -> int:
        return len(self.shard)

    def record(self, i: int) -> dict[str, Any]:
        url = self.urls[self.shard[i]]
        raw = read_record(url, int(self.offset[i]), int(self.size[i]))
        prompt_id, _, k = raw["__key__"].rpartition("-")
        if prompt_hash(prompt_id) != int(self.pid[i]) or k != str(self.k[i]):
            raise fail(url, f"sample {raw['__key__']} at byte {self.offset[i]} is not the one its index lists "
                            "(delete the shard's .idx.npz to rebuild it)")
        return raw

    def decode(self, indices: range, transform: Callable, on_bad_sample: OnBadSample
               ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[int], list[str]]:
        """(pixels, targets, decoded indices, skipped) of ``indices``; a bad sample is skipped or raised."""
        pixels, targets, kept, skipped = [], [], [], []
        for i in indices:
            raw = self.record(i)
            try:
                image, target = record_image(raw), record_embedding(raw)
            except Img2PromptError as exc:
                if on_bad_sample == "fail":
                    raise
                skipped.append(str(exc))
                continue
            pixels.append(transform(image))
            targets.append(torch.from_numpy(target))
            kept.append(i)
        if not pixels:
            raise fail(self.urls[self.shard[indices[0]]],
                       f"every sample of a batch is bad (the first: {skipped[0]}); the shard looks damaged")
        return pixels, targets, kept, skipped


class TrainPlan:
    """Which samples each (worker, rank) slot trains on, epoch by epoch: the same on every rank."""

    CHUNK = 1 << 20  # rows hashed at a time, so choosing an epoch's images needs little more than a bit per row

    def __init__(self, index: ShardIndex, *, batch_size: int, shuffle_buffer: int, seed: int, world_size: int,
                 num_workers: int):
        self.index = index
        self.batch_size = batch_size  # per rank
        self.shuffle_buffer = max(shuffle_buffer, 1)
        self.seed = seed
        self.world_size = world_size
        self.workers = max(num_workers, 1)
        self.train = index.rows_of("train")
        self.prompts = len(index.first_images("train"))
        where = index.urls[0] if index.urls else "shards"
        if not self.prompts:
            raise fail(where, "no samples with split 'train'")
        self._deals: dict[int, Deal] = {}

    @property
    def slots(self) -> int:
        return self.world_size * self.workers

    def steps(self, epoch: int) -> int:
        """Micro-batches of each rank in ``epoch``."""
        return self.deal(epoch).batches * self.workers

    def chosen(self, epoch: int) -> np.ndarray:
        """Boolean mask of the rows trained on in ``epoch``: one image of every training prompt. A prompt's
        images take turns (a random first one, then the next each epoch), so ``k`` epochs see all of its ``k``
        images; a fresh random pick per epoch would leave 1 in 8 of the HQ images unseen after 3 epochs."""
        index, key = self.index, np.uint64(_stable_int(self.seed, "images"))
        chosen = np.empty(len(index), dtype=bool)
        for start in range(0, len(index), self.CHUNK):
            rows = slice(start, start + self.CHUNK)
            pick = (_mix64(index.pid[rows] ^ key) + np.uint64(epoch)) % index.images[rows]
            chosen[rows] = self.train[rows] & (pick == index.image_rank[rows])
        return chosen

    def deal(self, epoch: int) -> Deal:
        """The shards of each slot: shuffled, each given to the slot holding the fewest samples so far."""
        if epoch not in self._deals:
            chosen, starts = self.chosen(epoch), self.index.starts
            per_shard = [int(chosen[a:b].sum()) for a, b in itertools.pairwise(starts)]
            order = np.random.default_rng(_stable_int(self.seed, epoch, "shards")).permutation(len(per_shard))
            heap = [(0, slot) for slot in range(self.slots)]
            shards: list[list[int]] = [[] for _ in range(self.slots)]
            for shard in order.tolist():
                if per_shard[shard]:
                    load, slot = heapq.heappop(heap)
                    shards[slot].append(shard)
                    heapq.heappush(heap, (load + per_shard[shard], slot))
            samples = [sum(per_shard[s] for s in slot) for slot in shards]
            batches = min(samples) // self.batch_size
            if batches == 0:
                raise fail(self.index.urls[0], f"the smallest of the {self.slots} (worker, rank) slots holds "
                           f"{min(samples)} training samples ({sum(samples)} in {len(per_shard)} shards), fewer than "
                           f"one batch of {self.batch_size}: use fewer workers or processes, or smaller shards")
            self._deals[epoch] = Deal(shards, samples, batches, self.batch_size)
        return self._deals[epoch]

    def stream(self, epoch: int, rank: int, skip: int, transform: Callable, on_bad_sample: OnBadSample
               ) -> TrainStream:
        """Rank ``rank``'s share of ``epoch``, after the ``skip`` micro-batches it already trained on."""
        deal, chosen, starts = self.deal(epoch), self.chosen(epoch), self.index.starts
        reads, first = [], []
        for worker in range(self.workers):
            slot = worker * self.world_size + rank
            rows = np.concatenate([np.flatnonzero(chosen[starts[s]:starts[s + 1]]) + starts[s]
                                   for s in deal.shards[slot]])
            rng = np.random.default_rng(_stable_int(self.seed, epoch, "order", slot))
            for start in range(0, len(rows), self.shuffle_buffer):
                rng.shuffle(rows[start:start + self.shuffle_buffer])
            reads.append(Reads.of(self.index, rows[: deal.batches * self.batch_size]))
            # The loader takes a rank's batches round-robin from its workers: batch j is worker j % workers's.
            first.append(len(range(worker, skip, self.workers)))
        return TrainStream(reads, first, skip % self.workers, transform, batch_size=self.batch_size, seed=self.seed,
                           epoch=epoch, world_size=self.world_size, rank=rank, on_bad_sample=on_bad_sample)


@dataclass(frozen=True)
class LoaderFailure:
    """An error met in a loader worker, handed to the training process as its one line (a worker's raise would
    reach it wrapped in a traceback)."""

    message: str


Batch = tuple[torch.Tensor, torch.Tensor, list[str]]  # pixels, targets, the bad samples skipped


class TrainStream(IterableDataset):
    """One rank's batches of one epoch: worker w decodes ``reads[w]`` in batches, from batch ``first[w]``.

    A DataLoader always asks its worker 0 first, so after a resume at batch j loader worker i serves worker
    (i + j) % workers's reads: the batches come in the uninterrupted order.
    """

    def __init__(self, reads: list[Reads], first: list[int], phase: int, transform: Callable, *, batch_size: int,
                 seed: int, epoch: int, world_size: int, rank: int, on_bad_sample: OnBadSample):
        self.reads = reads
        self.first = first
        self.phase = phase
        self.transform = transform
        self.batch_size = batch_size
        self.seed, self.epoch = seed, epoch
        self.world_size, self.rank = world_size, rank
        self.on_bad_sample = on_bad_sample

    def __iter__(self) -> Iterator[Batch | LoaderFailure]:
        info = get_worker_info()
        worker = ((info.id if info is not None else 0) + self.phase) % len(self.reads)
        reads, b = self.reads[worker], self.batch_size
        for batch in range(self.first[worker], len(reads) // b):
            # Augmentations draw from torch's RNG: seeded per (epoch, slot, batch), the same after a resume.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(_stable_int(self.seed, self.epoch, worker * self.world_size + self.rank, batch)
                                  % 2**63)
                try:
                    pixels, targets, _, skipped = reads.decode(range(batch * b, (batch + 1) * b), self.transform,
                                                               self.on_bad_sample)
                except Img2PromptError as exc:
                    yield LoaderFailure(str(exc))
                    return
            yield torch.stack(pixels), torch.stack(targets).float(), skipped


def train_loader(stream: TrainStream, num_workers: int) -> DataLoader:
    return DataLoader(stream, batch_size=None, num_workers=num_workers, persistent_workers=False)


class BadSamples:
    """This rank's skipped samples: each logged in one line and counted. More than ``max_share`` of an epoch's
    samples fails the run: that is a damaged disk or generator, not a stray file."""

    def __init__(self, max_share: float):
        self.max_share = max_share
        self.total = 0
        self.in_epoch = 0

    def add(self, skipped: list[str], epoch_samples: int) -> None:
        for message in skipped:
            print(f"train: skipped a bad sample: {message}", file=sys.stderr, flush=True)
        self.total += len(skipped)
        self.in_epoch += len(skipped)
        if self.in_epoch > self.max_share * epoch_samples:
            raise fail("train.data.max_bad_share", f"{self.in_epoch} bad samples in this rank's epoch of "
                       f"{epoch_samples}, more than {self.max_share:g} of them (the last: {skipped[-1]})")


def checked_batches(batches: Iterator[Batch | LoaderFailure], bad: BadSamples, epoch_samples: int
                    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The loader's batches, with its failures raised as one-line errors and its skipped samples counted."""
    for item in batches:
        if isinstance(item, LoaderFailure):
            raise Img2PromptError(item.message)
        pixels, targets, skipped = item
        if skipped:
            bad.add(skipped, epoch_samples)
        yield pixels, targets


def eval_share(rows: np.ndarray, rank: int, world_size: int) -> tuple[np.ndarray, int]:
    """Rank ``rank``'s equal share of ``rows`` and how many of them are real: the last shares are padded with the
    last row, so every rank runs the same forward passes (a sharded model needs all ranks in each one)."""
    size = -(-len(rows) // world_size)
    share = rows[rank * size:(rank + 1) * size]
    real = len(share)
    return np.concatenate([share, np.full(size - real, rows[-1], dtype=rows.dtype)]), real


def iter_eval_batches(index: ShardIndex, rows: np.ndarray, transform: Callable, batch_size: int,
                      on_bad_sample: OnBadSample = "skip"
                      ) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[int], list[str]]]:
    """``rows`` read by byte range, in batches: (pixels, targets, positions in ``rows`` decoded, skipped)."""
    reads = Reads.of(index, rows)
    for start in range(0, len(reads), batch_size):
        pixels, targets, kept, skipped = reads.decode(range(start, min(start + batch_size, len(reads))), transform,
                                                      on_bad_sample)
        yield torch.stack(pixels), torch.stack(targets).float(), kept, skipped


def build_train_transform(image_size: int, mean: tuple[float, ...], std: tuple[float, ...],
                          augment: AugmentConfig) -> Callable:
    from torchvision import transforms as T

    steps: list = []
    if augment.min_crop_scale < 1.0:
        steps.append(T.RandomResizedCrop(image_size, scale=(augment.min_crop_scale, 1.0),
                                         interpolation=T.InterpolationMode.BICUBIC))
    else:
        steps += [T.Resize(image_size, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(image_size)]
    if augment.hflip:
        steps.append(T.RandomHorizontalFlip())
    if augment.rand_augment:
        steps.append(RandAugment(augment.rand_augment))
    if augment.color_jitter > 0:
        j = augment.color_jitter
        steps.append(T.ColorJitter(brightness=j, contrast=j, saturation=j))
    steps += [T.ToTensor(), T.Normalize(mean, std)]
    return T.Compose(steps)
