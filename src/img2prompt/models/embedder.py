"""What every model kind is to the rest of the package: an ``ImageEmbedder`` (a name, the prompt sources it
learned from, and ``embed``).

Predict, serve, evaluate and the interrogator only ever call ``embed(images) -> (n, 384)`` unit vectors, so a
trained checkpoint, an ensemble, a baseline and a zero-shot model are interchangeable. ``sources`` lets every
place a user meets a model say when it learned only synthetic scenes (``provenance``). ``models.load`` tells the
kinds apart from the string a user gives.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image, ImageOps

from img2prompt.models.checkpoint import Checkpoint
from img2prompt.space import normalise


@runtime_checkable
class ImageEmbedder(Protocol):
    """Anything that maps images to prompt embeddings: checkpoints, ensembles, baselines."""

    name: str
    sources: tuple[str, ...]  # prompt sources it learned from; () when unknown or not learned (zero-shot)

    def embed(self, images: list[Image.Image]) -> np.ndarray: ...


class CheckpointEmbedder:
    """A trained ``Regressor`` checkpoint on ``device``, run ``batch_size`` images per forward pass."""

    def __init__(self, path: str | Path, *, device: str = "cpu", batch_size: int = 32, name: str | None = None):
        from img2prompt.models.regressor import Regressor

        checkpoint = Checkpoint.read(path)
        self.name = name or str(path)
        self.sources = checkpoint.sources
        self.batch_size = batch_size
        self.model = Regressor.from_pretrained(checkpoint).to(device)

    def embed(self, images: list[Image.Image]) -> np.ndarray:
        return self.model.embed(images, batch_size=self.batch_size)


class FlipTTA:
    """Test-time augmentation: the normalised mean of the embeddings of each image and its mirror image."""

    def __init__(self, inner: ImageEmbedder):
        self.inner = inner
        self.name = inner.name
        self.sources = inner.sources

    def embed(self, images: list[Image.Image]) -> np.ndarray:
        mirrored = [ImageOps.mirror(im) for im in images]
        both = self.inner.embed(list(images) + mirrored)
        return normalise(both[: len(images)] + both[len(images):])
