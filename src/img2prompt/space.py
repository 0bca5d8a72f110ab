"""The target space every stage shares: 384-d unit vectors of all-MiniLM-L6-v2 prompt embeddings.

Prompt tables, shards, predictions, checkpoints' heads and the decoder all hold vectors of this space, so its
size, how a vector is normalised, how two are compared (the competition metric is the mean cosine) and how a
matrix of them is stored in Arrow/Parquet live here once.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa

from img2prompt.errors import fail

EMBEDDING_DIM = 384


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Scale each row (or the one vector) to unit length, as float32; zero vectors stay zero."""
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


def cosine_per_row(predicted: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity in float64 (zero vectors score 0, as sklearn's metric does)."""
    a = np.asarray(predicted, dtype=np.float64)
    b = np.asarray(target, dtype=np.float64)
    denom = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    dots = np.einsum("ij,ij->i", a, b)
    return np.divide(dots, denom, out=np.zeros_like(dots), where=denom > 0)


def mean_cosine(predicted: np.ndarray, target: np.ndarray) -> float:
    """The competition score: mean row-wise cosine similarity."""
    return float(cosine_per_row(predicted, target).mean())


def empty() -> np.ndarray:
    """A (0, 384) matrix: what a step that embedded nothing returns."""
    return np.zeros((0, EMBEDDING_DIM), np.float32)


def embedding_column(embeddings: np.ndarray) -> pa.FixedSizeListArray:
    """An (n, 384) matrix as Arrow's fixed-size list, which readers turn back into a matrix without copies."""
    flat = pa.array(np.ascontiguousarray(embeddings, dtype=np.float32).reshape(-1), type=pa.float32())
    return pa.FixedSizeListArray.from_arrays(flat, EMBEDDING_DIM)


def column_matrix(column: pa.ChunkedArray | pa.Array, source: str | Path) -> np.ndarray:
    """An Arrow ``embedding`` column back as an (n, 384) float32 matrix; a wrong width or a non-finite
    value is a one-line error naming ``source`` (and the row)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if not pa.types.is_list(column.type) and not pa.types.is_fixed_size_list(column.type):
        raise fail(source, f"embedding column is {column.type}, not a list of {EMBEDDING_DIM} floats")
    flat = column.flatten().to_numpy(zero_copy_only=False)
    if len(flat) != len(column) * EMBEDDING_DIM:
        raise fail(source, f"embedding column is not {EMBEDDING_DIM}-d")
    matrix = flat.reshape(-1, EMBEDDING_DIM).astype(np.float32, copy=False)
    finite = np.isfinite(matrix).all(axis=1)
    if not finite.all():
        raise fail(source, f"row {int(np.flatnonzero(~finite)[0])}: non-finite embedding")
    return matrix


def npy_bytes(vector: np.ndarray) -> bytes:
    """One vector as ``.npy`` bytes (the ``emb.npy`` member of a shard sample); never pickled."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(vector, dtype=np.float32), allow_pickle=False)
    return buffer.getvalue()


def from_npy_bytes(data: bytes, source: str) -> np.ndarray:
    """Read an ``emb.npy`` member back; a member that is not a finite 384-d float vector names ``source``."""
    try:
        vector = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise fail(source, f"unreadable emb.npy ({exc})") from None
    if vector.shape != (EMBEDDING_DIM,) or not np.isfinite(vector).all():
        raise fail(source, f"emb.npy is not a finite {EMBEDDING_DIM}-d vector (shape {vector.shape})")
    return vector.astype(np.float32, copy=False)
