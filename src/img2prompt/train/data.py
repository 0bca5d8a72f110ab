"""The training data path over WebDataset shards, sized for 10.6M images read by many GPUs: the ``data:`` settings,
the loader, the bad-sample count, the validation batches and the training transform. The index of the shards is
``train.index``; what each slot reads in an epoch, and the stream that reads it, ``train.epochs``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Annotated, Literal

import numpy as np
import torch
from pydantic import Field
from torch.utils.data import DataLoader

from img2prompt.config import INPUT, StrictModel
from img2prompt.errors import Img2PromptError, fail
from img2prompt.train.augment import RandAugment
from img2prompt.train.epochs import Batch, LoaderFailure, OnBadSample, Reads, TrainStream
from img2prompt.train.index import ShardIndex


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
