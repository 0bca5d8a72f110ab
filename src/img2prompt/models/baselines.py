"""Reference models behind the ``ImageEmbedder`` protocol, so they sit in the same tables as trained ones.

- ``MeanEmbedding``: one constant vector, the normalised mean of a prompt table's embeddings. It is the
  score any model must beat (0.49 on held-out real prompts against a real-prompt bank).
- ``NearestNeighbour``: image features from a pretrained backbone, the nearest image of a shard bank, and
  the prompt embedding of that image (or the normalised mean over the ``k`` nearest).

``load_model("mean:PROMPTS.parquet")`` and ``load_model("nearest:SHARDS")`` (``models.load``) build them from
the same strings that ``img2prompt predict`` and ensemble YAMLs accept.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from img2prompt.errors import Img2PromptError, fail
from img2prompt.prompt_table import read_table
from img2prompt.space import EMBEDDING_DIM, empty, normalise


class MeanEmbedding:
    """Predicts the same unit vector, the mean prompt embedding, for every image."""

    def __init__(self, vector: np.ndarray, name: str = "mean", sources: tuple[str, ...] = ()):
        self.name = name
        self.sources = sources
        self.vector = normalise(np.asarray(vector, dtype=np.float32).reshape(EMBEDDING_DIM))

    @classmethod
    def from_table(cls, path: str | Path) -> MeanEmbedding:
        """Mean over the table's ``train`` split (all rows when it has none)."""
        frame, embeddings = read_table(path, columns=["split", "source", "embedding"])
        if not len(frame):
            raise fail(path, "the prompt table is empty")
        train = (frame.split == "train").to_numpy()
        rows = train if train.any() else np.ones(len(frame), dtype=bool)
        return cls(embeddings[rows].mean(axis=0), sources=tuple(sorted(set(frame.source[rows]))))

    def embed(self, images: list[Image.Image]) -> np.ndarray:
        return np.repeat(self.vector[None], len(images), axis=0)


class NearestNeighbour:
    """Copies the prompt embedding of the most similar bank image (cosine of pooled backbone features)."""

    def __init__(self, images: list[Image.Image], embeddings: np.ndarray, *, backbone: str = "efficientnet_lite0",
                 tiny: bool = False, k: int = 1, batch_size: int = 32, image_size: int | None = None,
                 name: str = "nearest", sources: tuple[str, ...] = ()):
        """``image_size``: the backbone's input size (None: its native size; smaller images gain nothing from
        more, e.g. a test's 96 px shards)."""
        import faiss
        import torch

        from img2prompt.models.backbones import build_backbone
        from img2prompt.models.regressor import build_transform

        if not images:
            raise Img2PromptError("nearest-neighbour baseline: the image bank is empty")
        self.name = name
        self.sources = sources
        self.k = min(k, len(images))
        self.batch_size = batch_size
        network, spec = build_backbone(backbone, pretrained=not tiny, tiny=tiny)
        # NHWC: oneDNN runs the depthwise convolutions of the CNN backbones several times faster on the CPU.
        self._network = network.eval().to(memory_format=torch.channels_last)
        self._transform = build_transform(image_size or spec.image_size, spec.mean, spec.std)
        self._embeddings = normalise(embeddings)
        self._index = faiss.IndexFlatIP(spec.feature_dim)
        self._index.add(self._features(images))

    @classmethod
    def from_shards(cls, source: str | Path, **options) -> NearestNeighbour:
        """Index the training samples of a shard folder (or one .tar) with their prompt embeddings.

        Shards hold every split; a val/test image in the bank would find itself and score 1.0.
        """
        from img2prompt.shards import find_shards, iter_samples

        images, embeddings, sources = [], [], set()
        for sample in iter_samples(find_shards(source)):
            if sample.meta.get("split", "train") != "train":
                continue
            images.append(sample.image)
            embeddings.append(sample.embedding)
            sources.add(str(sample.meta.get("source", "")))
        if not images:
            raise fail(source, "no training samples in the shards")
        return cls(images, np.stack(embeddings), sources=tuple(sorted(sources - {""})), **options)

    def _features(self, images: list[Image.Image]) -> np.ndarray:
        import torch

        chunks = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                batch = torch.stack([self._transform(im) for im in images[start:start + self.batch_size]])
                features = self._network(batch.to(memory_format=torch.channels_last))
                if features.ndim == 3:  # token outputs: mean over tokens
                    features = features.mean(dim=1)
                chunks.append(features.float().numpy())
        return np.ascontiguousarray(normalise(np.concatenate(chunks)))

    def embed(self, images: list[Image.Image]) -> np.ndarray:
        if not images:
            return empty()
        _, ids = self._index.search(self._features(images), self.k)
        return normalise(self._embeddings[ids].mean(axis=1))
