"""True prompts to score predictions against: what evaluate and ensemble compare with.

A truth source is a Kaggle ``imgId,prompt`` CSV (its prompts are embedded with the target embedder), a prompt
table, or generated shards (a shard folder or ``.tar``: every sample carries its prompt and target, so nothing
is embedded again). An image id matches a truth key exactly, or as ``<key>-<k>``: the sample keys that
generation writes, so predictions on generated images score against the prompt table directly.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from img2prompt.errors import fail
from img2prompt.space import empty


@dataclass
class Truth:
    keys: list[str]
    prompts: list[str]
    sources: list[str]
    embeddings: np.ndarray


def load_truth(path: str | Path, keys: Collection[str] | None = None) -> Truth:
    """True prompts and their embeddings from a prompts CSV, a prompt table or shards.

    ``keys`` (image ids) keeps shard truth to the samples asked for, so scoring a test split never holds the
    targets of millions of training samples.
    """
    from img2prompt.shards import is_shards

    path = Path(path)
    if is_shards(path):
        return _shard_truth(path, None if keys is None else set(keys))
    if path.suffix == ".csv":
        from img2prompt.embedding import TextEmbedder
        from img2prompt.kaggle import read_prompts_csv

        frame = read_prompts_csv(path)
        vectors = TextEmbedder().encode(list(frame.prompt))
        return Truth(list(frame.imgId), list(frame.prompt), [path.stem] * len(frame), vectors)
    from img2prompt.prompt_table import read_table

    frame, vectors = read_table(path, columns=["prompt_id", "prompt", "source", "embedding"])
    return Truth(list(frame.prompt_id), list(frame.prompt), list(frame.source), vectors)


def _shard_truth(path: Path, keys: set[str] | None) -> Truth:
    from img2prompt.shards import find_shards, read_labels

    labels = [label for shard in find_shards(path) for label in read_labels(shard)
              if keys is None or label.key in keys]
    vectors = np.stack([label.embedding for label in labels]) if labels else empty()
    return Truth([label.key for label in labels], [str(label.meta.get("prompt", "")) for label in labels],
                 [str(label.meta.get("source", "unknown")) for label in labels], vectors)


def match_truth(image_ids: list[str], truth: Truth, source: str | Path) -> np.ndarray:
    """Row of ``truth`` for each image id (exact key, else ``<key>-<k>``); an unknown id is an error."""
    index = {key: row for row, key in enumerate(truth.keys)}
    rows = []
    for image_id in image_ids:
        row = index.get(image_id, index.get(image_id.rsplit("-", 1)[0]))
        if row is None:
            raise fail(source, f"no true prompt for image {image_id!r}")
        rows.append(row)
    return np.asarray(rows, dtype=np.int64)
