"""An epoch: which samples each (loader worker, rank) slot reads (``TrainPlan``), and the stream that reads them
(``TrainStream``).

``TrainPlan`` is a pure function of the index and (seed, epoch), so every rank computes the same one: one image per
training prompt (a hash of (prompt, seed, epoch) picks it), then the shards in a shuffled order, each dealt to the
least loaded (worker, rank) slot. So every sample is read once per epoch, by one loader worker of one rank, and the
deal changes every epoch. Inside a slot, samples are shuffled in blocks of ``shuffle_buffer``. Every slot trains on
as many batches as the smallest one holds, so all ranks take the same optimizer steps; the bigger slots' extra
samples (less than a shard each) are left for another epoch's deal.

``TrainStream`` is one rank's share of one epoch: per loader worker, a list of byte ranges read and decoded in
order. A resumed run starts each worker after the batches it trained on, without reading them. A sample whose image
or target does not decode is skipped (``on_bad_sample: skip``) and its batch is one row shorter, never missing, so
the ranks still take the same steps; a damaged tar is an error naming the shard.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from img2prompt.errors import Img2PromptError, fail
from img2prompt.shards import (
    prompt_hash,
    read_record,
    record_embedding,
    record_image,
)
from img2prompt.train.index import ShardIndex

OnBadSample = Literal["skip", "fail"]


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
