"""The predictions table (DESIGN.md contract 4): what predict writes and ensemble, evaluate and decode read.

Parquet with ``image_id`` (a file stem, as Kaggle ids are, or a shard sample key), ``model`` (the spec the
model was loaded from, so an ensemble can point back at it) and ``embedding`` (float32[384]). A Kaggle
submission CSV is read as the same table, its model named after the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from img2prompt.errors import fail
from img2prompt.files import atomic_path
from img2prompt.space import EMBEDDING_DIM, column_matrix, embedding_column

PREDICTION_COLUMNS = ("image_id", "model", "embedding")


def write_predictions(ids: Sequence[str], model: str, embeddings: np.ndarray, path: str | Path) -> Path:
    """Write a predictions table atomically."""
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    if embeddings.shape != (len(ids), EMBEDDING_DIM):
        raise ValueError(f"expected embeddings of shape ({len(ids)}, {EMBEDDING_DIM}), got {embeddings.shape}")
    table = pa.table({
        "image_id": pa.array(list(ids), pa.string()),
        "model": pa.array([model] * len(ids), pa.string()),
        "embedding": embedding_column(embeddings),
    })
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def read_predictions(path: str | Path) -> tuple[pd.DataFrame, np.ndarray]:
    """Read a predictions table (Parquet) or a Kaggle submission CSV (model = the file name)."""
    from img2prompt.kaggle import read_submission

    path = Path(path)
    if path.suffix == ".csv":
        ids, vectors = read_submission(path)
        return pd.DataFrame({"image_id": ids, "model": path.name}), vectors
    try:
        table = pq.read_table(path)
    except FileNotFoundError:
        raise fail(path, "predictions file not found") from None
    except (pa.ArrowInvalid, OSError) as exc:
        raise fail(path, f"not a readable Parquet predictions table ({exc})") from None
    missing = [c for c in PREDICTION_COLUMNS if c not in table.column_names]
    if missing:
        raise fail(path, f"missing column(s) {', '.join(missing)}: not a predictions table")
    if not table.num_rows:
        raise fail(path, "the predictions table has no rows")
    vectors = column_matrix(table.column("embedding"), path)
    return table.select(["image_id", "model"]).to_pandas(), vectors
