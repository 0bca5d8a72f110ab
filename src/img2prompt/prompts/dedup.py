"""Near-duplicate removal and grouping on the target embeddings, with faiss.

Rows are in priority order (the caller puts hq sources first). One range search finds, for every row, the
earlier rows within cosine ``cluster_threshold``. Then, greedily in row order, a row is removed when an
earlier *kept* row is more similar than ``threshold`` (the winners used 0.8; 0.9 keeps more). Kept rows
joined by any edge above ``cluster_threshold`` form one cluster (connected components), so a split by
cluster never puts two prompts that close on both sides of train/validation.

Index: exact (``IndexFlatIP``) up to ``flat_max`` rows, else IVF (``IndexIVFFlat``, k-means cells, ``nprobe``
cells searched per query): both answer range searches, which HNSW cannot. Everything is deterministic: the
k-means sample and seed are fixed, and results depend only on the vectors and their order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import faiss
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from tqdm.auto import tqdm

from img2prompt.config import StrictModel


class DedupConfig(StrictModel):
    threshold: float = 0.8
    cluster_threshold: float = 0.7
    index: Literal["auto", "flat", "ivf"] = "auto"
    flat_max: int = 100_000
    nlist: int | None = None  # IVF cells; default 2 * sqrt(n)
    nprobe: int = 8
    batch: int = 16_384
    seed: int = 1234


@dataclass
class Edges:
    """Pairs (earlier, later) of rows with cosine above the search radius."""

    earlier: np.ndarray  # int64
    later: np.ndarray  # int64
    cosine: np.ndarray  # float32


@dataclass
class DedupResult:
    keep: np.ndarray  # bool per row
    duplicate_of: np.ndarray  # int64 per row: the kept row a removed row duplicates, -1 for kept rows
    cosine: np.ndarray  # float32 per row: cosine to duplicate_of (0 for kept rows)
    cluster: np.ndarray  # int64 per row: first kept row of its cluster, -1 for removed rows
    index_kind: str
    nearest: np.ndarray  # float32: nearest-neighbour cosine of a sample of rows


def build_index(vectors: np.ndarray, config: DedupConfig) -> tuple[faiss.Index, str]:
    """An inner-product index over unit vectors: exact when small, IVF for millions."""
    n, dim = vectors.shape
    kind = config.index
    if kind == "auto":
        kind = "flat" if n <= config.flat_max else "ivf"
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    else:
        nlist = config.nlist or max(1, int(2 * np.sqrt(n)))
        nlist = min(nlist, n)
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = config.seed
        sample = min(n, nlist * 40)  # faiss wants >= 39 points per cell
        rows = np.sort(np.random.default_rng(config.seed).choice(n, sample, replace=False))
        index.train(np.ascontiguousarray(vectors[rows]))
        index.nprobe = min(config.nprobe, nlist)
    for start in range(0, n, config.batch):
        index.add(np.ascontiguousarray(vectors[start : start + config.batch], dtype=np.float32))
    return index, kind


def earlier_neighbours(
    vectors: np.ndarray, index: faiss.Index, radius: float, batch: int, progress: bool = False
) -> Edges:
    """Every pair (i < j) with cosine(i, j) > radius, found by range search of each row against the index."""
    earlier, later, cosine = [], [], []
    with tqdm(total=len(vectors), desc="near-duplicates", unit="prompt", disable=not progress) as bar:
        for start in range(0, len(vectors), batch):
            queries = np.ascontiguousarray(vectors[start : start + batch], dtype=np.float32)
            lims, sims, ids = index.range_search(queries, radius)
            rows = start + np.repeat(np.arange(len(queries)), np.diff(lims).astype(np.int64))
            mask = ids < rows
            earlier.append(ids[mask].astype(np.int64))
            later.append(rows[mask])
            cosine.append(sims[mask].astype(np.float32))
            bar.update(len(queries))
    if not earlier:
        empty = np.zeros(0, np.int64)
        return Edges(empty, empty, np.zeros(0, np.float32))
    return Edges(np.concatenate(earlier), np.concatenate(later), np.concatenate(cosine))


def greedy_removal(n: int, edges: Edges, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """In row order, remove a row whose most similar earlier kept row is above ``threshold``."""
    keep = np.ones(n, bool)
    duplicate_of = np.full(n, -1, np.int64)
    best = np.zeros(n, np.float32)
    close = edges.cosine > threshold
    order = np.lexsort((-edges.cosine[close], edges.later[close]))  # by later row, most similar first
    earlier, later, cosine = edges.earlier[close][order], edges.later[close][order], edges.cosine[close][order]
    for i, j, c in zip(earlier.tolist(), later.tolist(), cosine.tolist(), strict=True):
        if keep[j] and keep[i]:  # i < j is final already; the first kept i is the most similar one
            keep[j] = False
            duplicate_of[j] = i
            best[j] = c
    return keep, duplicate_of, best


def clusters(keep: np.ndarray, edges: Edges, threshold: float) -> np.ndarray:
    """Connected components of kept rows over edges above ``threshold``, named by their first row."""
    n = len(keep)
    use = (edges.cosine > threshold) & keep[edges.earlier] & keep[edges.later]
    graph = coo_matrix((np.ones(int(use.sum()), np.int8), (edges.earlier[use], edges.later[use])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    first = np.full(labels.max() + 1 if n else 0, n, np.int64)
    np.minimum.at(first, labels, np.arange(n))  # labels of removed rows are singletons, harmless
    return np.where(keep, first[labels], -1)


def near_duplicates(
    vectors: np.ndarray, config: DedupConfig, sample: int = 0, progress: bool = False
) -> DedupResult:
    """Remove near duplicates (earlier rows win) and group what is left into clusters.

    ``sample`` rows (evenly spaced) also get their nearest-neighbour cosine, for the report's histogram.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    n = len(vectors)
    if n == 0:
        empty = np.zeros(0, np.int64)
        nothing = np.zeros(0, np.float32)
        return DedupResult(np.zeros(0, bool), empty, nothing, empty, "flat", nothing)
    index, kind = build_index(vectors, config)
    radius = min(config.threshold, config.cluster_threshold)
    edges = earlier_neighbours(vectors, index, radius, config.batch, progress)
    keep, duplicate_of, cosine = greedy_removal(n, edges, config.threshold)
    cluster = clusters(keep, edges, config.cluster_threshold)
    return DedupResult(keep, duplicate_of, cosine, cluster, kind, nearest_cosine(vectors, index, sample))


def nearest_cosine(vectors: np.ndarray, index: faiss.Index, sample: int) -> np.ndarray:
    """Cosine of ``sample`` evenly spaced rows to their nearest other row."""
    if len(vectors) < 2 or sample <= 0:
        return np.zeros(0, np.float32)
    rows = np.unique(np.linspace(0, len(vectors) - 1, min(sample, len(vectors))).astype(np.int64))
    sims, ids = index.search(np.ascontiguousarray(vectors[rows]), 2)
    # the row itself is usually first, but an exact twin may take its place: take the best other id
    return np.where(ids[:, 0] == rows, sims[:, 1], sims[:, 0]).astype(np.float32)
