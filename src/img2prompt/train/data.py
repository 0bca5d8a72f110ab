"""The training stream over WebDataset shards: one random image per prompt per epoch, shuffled, batched.

An index pass reads only the small members (``.json``, ``.emb.npy``) of each tar, so the loader knows every
prompt's images, splits and targets before any image is decoded. Each epoch then replays one global stream
that depends only on (seed, epoch): shards in a shuffled order, one chosen image per training prompt, a
shuffle buffer of raw (undecoded) records. Global batch j goes to DataLoader worker ``j % workers`` and each
rank decodes only its slice of it, so a run sees the same global batches whatever the number of processes
(a 2-process run follows the 1-process loss curve) and a resumed run skips batches without decoding them.
"""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from pydantic import Field
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from img2prompt.config import StrictModel
from img2prompt.errors import fail
from img2prompt.shards import find_shards, read_labels, record_embedding, record_image


class AugmentConfig(StrictModel):
    """Off by default: the winners found flips hurt (prompts say "left"/"right") and crops lose content."""

    hflip: bool = False
    min_crop_scale: float = 1.0  # < 1 turns on RandomResizedCrop(scale=(min_crop_scale, 1))
    color_jitter: float = 0.0


class DataConfig(StrictModel):
    shards: list[str] = Field(default_factory=list)  # shard folders (with manifest.jsonl) or .tar files
    val_shards: list[str] = Field(default_factory=list)  # empty: validate on the ``val`` split of ``shards``
    batch_size: int = 32
    shuffle_buffer: int = 1000
    num_workers: int = 0
    augment: AugmentConfig = AugmentConfig()


@dataclass
class Record:
    """What the index knows of one sample without decoding its image."""

    shard: int
    key: str
    prompt_id: str
    split: str
    source: str
    embedding: np.ndarray


@dataclass
class ShardIndex:
    urls: list[str]
    records: list[Record] = field(default_factory=list)

    @classmethod
    def build(cls, sources: list[str | Path]) -> ShardIndex:
        urls = [str(path) for source in sources for path in find_shards(source)]
        index = cls(urls)
        for shard, url in enumerate(urls):
            index.records.extend(_index_tar(shard, Path(url)))
        return index

    def split(self, name: str) -> list[Record]:
        return [r for r in self.records if r.split == name]

    def images_per_prompt(self, split: str) -> dict[str, list[str]]:
        keys: dict[str, list[str]] = defaultdict(list)
        for record in self.split(split):
            keys[record.prompt_id].append(record.key)
        return {pid: sorted(ks) for pid, ks in keys.items()}

    def mean_embedding(self, split: str) -> np.ndarray:
        """The constant baseline: the normalised mean target of a split."""
        records = self.split(split)
        if not records:
            raise fail(self.urls[0] if self.urls else "shards", f"no samples with split {split!r}")
        vectors = np.stack([r.embedding for r in records]).astype(np.float64)
        mean = vectors.mean(axis=0)
        return (mean / np.linalg.norm(mean)).astype(np.float32)


def _index_tar(shard: int, path: Path) -> list[Record]:
    return [Record(shard, label.key, str(label.meta["prompt_id"]), str(label.meta.get("split", "train")),
                   str(label.meta.get("source", "unknown")), label.embedding) for label in read_labels(path)]


def _stable_int(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:8], "little")


def choose_images(images: dict[str, list[str]], seed: int, epoch: int) -> set[str]:
    """One image key per prompt, a different random pick each epoch."""
    return {keys[_stable_int(seed, epoch, pid) % len(keys)] for pid, keys in images.items()}


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
    if augment.color_jitter > 0:
        j = augment.color_jitter
        steps.append(T.ColorJitter(brightness=j, contrast=j, saturation=j))
    steps += [T.ToTensor(), T.Normalize(mean, std)]
    return T.Compose(steps)


class TrainStream(IterableDataset):
    """Batches ``(pixels, targets)`` of this rank for one epoch, starting after ``skip`` global batches."""

    def __init__(self, index: ShardIndex, transform: Callable, *, batch_size: int, shuffle_buffer: int,
                 seed: int, rank: int, world_size: int, num_workers: int):
        self.index = index
        self.transform = transform
        self.batch_size = batch_size  # per rank
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.num_workers = max(num_workers, 1)
        self.images = index.images_per_prompt("train")
        if not self.images:
            raise fail(index.urls[0] if index.urls else "shards", "no samples with split 'train'")
        self.global_batch = batch_size * world_size
        self.batches_per_worker = len(self.images) // (self.global_batch * self.num_workers)
        if self.batches_per_worker == 0:
            raise fail(index.urls[0], f"{len(self.images)} training prompts are fewer than one global batch "
                                      f"({self.global_batch} x {self.num_workers} workers)")
        self.epoch = 0
        self.skip = 0

    @property
    def steps_per_epoch(self) -> int:
        return self.batches_per_worker * self.num_workers

    def set_position(self, epoch: int, skip: int) -> None:
        self.epoch, self.skip = epoch, skip

    def _raw_stream(self) -> Iterator[dict]:
        import webdataset as wds

        chosen = choose_images(self.images, self.seed, self.epoch)
        urls = list(self.index.urls)
        random.Random(_stable_int(self.seed, self.epoch, "shards")).shuffle(urls)
        for raw in wds.tarfile_to_samples()([{"url": url} for url in urls]):
            if raw["__key__"] in chosen:
                yield raw

    def _shuffled(self) -> Iterator[dict]:
        rng = random.Random(_stable_int(self.seed, self.epoch, "buffer"))
        buffer: list[dict] = []
        for raw in self._raw_stream():
            buffer.append(raw)
            if len(buffer) >= self.shuffle_buffer:
                yield buffer.pop(rng.randrange(len(buffer)))
        rng.shuffle(buffer)
        yield from buffer

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        total = self.steps_per_epoch
        batch: list[dict] = []
        batch_index = 0
        for raw in self._shuffled():
            batch.append(raw)
            if len(batch) < self.global_batch:
                continue
            mine = batch_index % self.num_workers == worker and batch_index >= self.skip
            if mine:
                yield self._decode(batch, batch_index)
            batch = []
            batch_index += 1
            if batch_index >= total:
                return

    def _decode(self, batch: list[dict], batch_index: int) -> tuple[torch.Tensor, torch.Tensor]:
        part = batch[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]
        pixels, targets = [], []
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_stable_int(self.seed, self.epoch, batch_index, self.rank) % 2**63)
            for raw in part:
                pixels.append(self.transform(record_image(raw)))
                targets.append(torch.from_numpy(record_embedding(raw)))
        return torch.stack(pixels), torch.stack(targets).float()


def train_loader(stream: TrainStream, num_workers: int) -> DataLoader:
    return DataLoader(stream, batch_size=None, num_workers=num_workers, persistent_workers=False)


def iter_eval_batches(index: ShardIndex, split: str, transform: Callable, batch_size: int
                      ) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[str]]]:
    """The first image of each prompt of ``split``, in shard order: (pixels, targets, sources)."""
    import webdataset as wds

    wanted = {keys[0] for keys in index.images_per_prompt(split).values()}
    sources = {r.key: r.source for r in index.split(split)}
    pixels, targets, names = [], [], []
    for raw in wds.tarfile_to_samples()([{"url": url} for url in index.urls]):
        key = raw["__key__"]
        if key not in wanted:
            continue
        pixels.append(transform(record_image(raw)))
        targets.append(torch.from_numpy(record_embedding(raw)))
        names.append(sources[key])
        if len(pixels) == batch_size:
            yield torch.stack(pixels), torch.stack(targets).float(), names
            pixels, targets, names = [], [], []
    if pixels:
        yield torch.stack(pixels), torch.stack(targets).float(), names
