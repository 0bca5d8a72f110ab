"""The prompt table (DESIGN.md contract 1): the file every stage after curation reads.

Columns: ``prompt_id`` (stable hash of the normalised text), ``prompt``, ``source``, ``tier`` (hq/lq),
``cluster`` (near-duplicate group, for group-aware splits), ``split`` (train/val/test) and
``embedding`` (float32[384], L2-normalised), stored as a fixed-size list so readers get a matrix back.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from img2prompt.errors import fail
from img2prompt.files import atomic_path
from img2prompt.space import EMBEDDING_DIM, column_matrix, embedding_column

COLUMNS = ("prompt_id", "prompt", "source", "tier", "cluster", "split", "embedding")
_SPACES = re.compile(r"\s+")
ROW_GROUP = 16_384  # rows per Parquet row group, the unit written at once (65,536 cost 0.35 GB of buffers)


def normalise_text(text: str) -> str:
    """Canonical form used for identity: Unicode NFKC, lower case, single spaces, no outer space/commas."""
    text = unicodedata.normalize("NFKC", text).lower()
    return _SPACES.sub(" ", text).strip(" ,")


def prompt_id(text: str) -> str:
    """Stable 16-hex-digit id of a prompt; two prompts that normalise alike share it."""
    return hashlib.sha1(normalise_text(text).encode("utf-8")).hexdigest()[:16]


def schema() -> pa.Schema:
    return pa.schema(
        [
            ("prompt_id", pa.string()),
            ("prompt", pa.string()),
            ("source", pa.string()),
            ("tier", pa.string()),
            ("cluster", pa.int64()),
            ("split", pa.string()),
            ("embedding", pa.list_(pa.float32(), EMBEDDING_DIM)),
        ]
    )


def write_table(
    frame: pd.DataFrame, embeddings: np.ndarray, path: str | Path, rows: np.ndarray | None = None
) -> Path:
    """Write ``frame`` (the scalar columns) and its embeddings atomically as Parquet.

    Row ``k`` of the table gets ``embeddings[rows[k]]`` (``embeddings[k]`` without ``rows``). The table is
    written a row group at a time, so a large matrix (or memmap) is never copied whole.
    """
    embeddings = np.asarray(embeddings)  # a view of a float32 matrix or memmap, not a copy
    rows = np.arange(len(embeddings)) if rows is None else np.asarray(rows)
    if embeddings.ndim != 2 or embeddings.shape[1] != EMBEDDING_DIM or len(rows) != len(frame):
        raise ValueError(f"embeddings shape {embeddings.shape} does not match {len(frame)} rows")
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, schema()) as writer:
        for start in range(0, max(len(frame), 1), ROW_GROUP):
            part = frame.iloc[start : start + ROW_GROUP]
            columns = {name: pa.array(part[name].tolist()) for name in COLUMNS[:-1]}
            columns["embedding"] = embedding_column(embeddings[rows[start : start + ROW_GROUP]])
            writer.write_table(pa.table(columns).cast(schema()))
    return Path(path)


def read_table(path: str | Path, columns: list[str] | None = None) -> tuple[pd.DataFrame, np.ndarray | None]:
    """Read a prompt table; returns the scalar columns and the embedding matrix (None if not requested)."""
    path = Path(path)
    try:
        names = pq.read_schema(path).names
    except FileNotFoundError:
        raise fail(path, "prompt table not found") from None
    except (pa.ArrowInvalid, OSError) as exc:
        raise fail(path, f"not a readable Parquet prompt table ({str(exc).splitlines()[0]})") from None
    missing = [c for c in (columns or COLUMNS) if c not in names]
    if missing:  # checked on the schema: reading a wrong file's columns would dump its whole schema
        kind = " (it is a predictions table)" if {"image_id", "model"} <= set(names) else ""
        raise fail(path, f"missing column(s) {', '.join(missing)}: not a prompt table{kind}")
    try:
        table = pq.read_table(path, columns=columns)
    except (pa.ArrowInvalid, OSError) as exc:
        raise fail(path, f"not a readable Parquet prompt table ({str(exc).splitlines()[0]})") from None
    embeddings = None
    if "embedding" in table.column_names:
        embeddings = column_matrix(table.column("embedding"), path)
        table = table.drop(["embedding"])
    return table.to_pandas(), embeddings
