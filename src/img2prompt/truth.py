"""True prompts to score predictions against: what evaluate and ensemble compare with.

A truth file is a Kaggle ``imgId,prompt`` CSV (its prompts are embedded with the target embedder) or a prompt
table (its embeddings are used as they are). An image id matches a truth key exactly, or as
``<key>-<k>``: the sample keys that generation writes, so predictions on generated images score against
the prompt table directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from img2prompt.errors import fail


@dataclass
class Truth:
    keys: list[str]
    prompts: list[str]
    sources: list[str]
    embeddings: np.ndarray


def load_truth(path: str | Path) -> Truth:
    """True prompts and their embeddings from a prompts CSV or a prompt table (by suffix)."""
    path = Path(path)
    if path.suffix == ".csv":
        from img2prompt.embedding import TextEmbedder
        from img2prompt.kaggle import read_prompts_csv

        frame = read_prompts_csv(path)
        vectors = TextEmbedder().encode(list(frame.prompt))
        return Truth(list(frame.imgId), list(frame.prompt), [path.stem] * len(frame), vectors)
    from img2prompt.prompt_table import read_table

    frame, vectors = read_table(path, columns=["prompt_id", "prompt", "source", "embedding"])
    return Truth(list(frame.prompt_id), list(frame.prompt), list(frame.source), vectors)


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
