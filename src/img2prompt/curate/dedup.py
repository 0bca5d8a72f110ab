"""Near-duplicate removal and grouping on the target embeddings: faiss k-means cells, blocked BLAS scans.

Rows are in priority order (the caller puts hq sources first). One search finds every pair of rows closer
than cosine ``cluster_threshold``. Then, greedily in row order, a row is removed when an earlier *kept* row
is more similar than ``threshold`` (the winners used 0.8; 0.9 keeps more).

Kept rows are grouped twice at ``cluster_threshold``. ``cluster`` is leader clustering: in row order, a kept
row joins the cluster of its most similar earlier leader above the threshold, else it leads a new cluster,
so every member is within the threshold of its leader (connected components chain: on ../shared/data one
held 30% of the prompts). ``component`` is the connected components of the same pairs; the split step uses
it to move any validation/test row that a train row reaches above the threshold into train.

The search is IVF: faiss k-means splits the rows into ``nlist`` cells and each row looks into its
``nprobe`` nearest cells; a pair is found when either of its rows probes the other's cell (faiss
``IndexIVFFlat`` with the same centroids, queried with every row). Pairs near the threshold are the ones
IVF misses; the defaults were chosen on a dense 10k real-prompt sample (benchmarks/RESULTS.md).
Instead of faiss's per-query list scan (memory-bound: every query re-reads its cells), each cell is scanned
once as a matrix product against all the rows that probe it, which BLAS runs from cache: the same pairs,
several times faster at 100k rows (benchmarks/RESULTS.md). Up to ``flat_max`` rows there is a single cell,
i.e. exact brute force. The same scan gives every row's nearest-neighbour cosine for free. Deterministic:
the k-means sample and seed are fixed, so results depend only on the vectors and their order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import faiss
import numpy as np
from pydantic import Field
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from tqdm.auto import tqdm

from img2prompt.config import Seed, StrictModel
from img2prompt.space import EMBEDDING_DIM

BLOCK_ELEMENTS = 8_000_000  # similarities computed at once (32 MB)
LOOP_CHUNK = 1_000_000  # pairs turned into Python objects at once by the sequential passes


class DedupConfig(StrictModel):
    threshold: float = Field(0.8, gt=0, le=1)  # cosine above which the later prompt is a near duplicate (1: none)
    cluster_threshold: float = Field(0.7, gt=0, le=1)
    index: Literal["auto", "flat", "ivf"] = "auto"
    flat_max: int = Field(50_000, ge=0)
    nlist: int | None = Field(None, ge=1)  # IVF cells; default 2 sqrt(n)
    nprobe: int = Field(32, ge=1)
    train_per_cell: int = Field(40, ge=1)  # k-means sample size per cell (faiss wants >= 39)
    # PCA dimensions in which cells are found (384: no projection; 64 loses recall)
    cell_dims: int = Field(EMBEDDING_DIM, ge=1, le=EMBEDDING_DIM)
    seed: Seed = 1234


@dataclass
class Cells:
    """Each row's ``nprobe`` nearest cells, nearest first: column 0 is the cell the row lives in."""

    probes: np.ndarray  # (n, nprobe) int32
    nlist: int
    kind: str
    centroids: np.ndarray | None = None  # (nlist, dim) for IVF without projection


@dataclass
class Edges:
    """Pairs (earlier, later) of rows with cosine above the search radius (int32 rows: 12 bytes a pair)."""

    earlier: np.ndarray  # int32
    later: np.ndarray  # int32
    cosine: np.ndarray  # float32


@dataclass
class DedupResult:
    keep: np.ndarray  # bool per row
    duplicate_of: np.ndarray  # int64 per row: the kept row a removed row duplicates, -1 for kept rows
    cosine: np.ndarray  # float32 per row: cosine to duplicate_of (0 for kept rows)
    cluster: np.ndarray  # int64 per row: the leader (first row) of its cluster, -1 for removed rows
    component: np.ndarray  # int64 per row: first row of its connected component, -1 for removed rows
    nearest: np.ndarray  # float32 per row: cosine to the nearest other row found (-1 when none)
    index_kind: str
    pairs: int  # pairs found above min(threshold, cluster_threshold): what the grouping passes hold in memory


def assign_cells(vectors: np.ndarray, config: DedupConfig) -> Cells:
    """One cell (exact search) for small sets; else faiss spherical k-means cells and each row's probes.

    Cells are found in a ``cell_dims``-d PCA projection: k-means and probing cost 6x less than in 384-d,
    and close pairs stay close (a projection only shrinks distances). Similarities are always full 384-d.
    """
    n, dim = vectors.shape
    kind = config.index if config.index != "auto" else ("flat" if n <= config.flat_max else "ivf")
    if kind == "flat":
        return Cells(np.zeros((n, 1), np.int32), 1, kind)
    nlist = min(n, config.nlist or max(1, int(2 * np.sqrt(n))))
    sample = min(n, nlist * config.train_per_cell)
    rows = np.sort(np.random.default_rng(config.seed).choice(n, sample, replace=False))
    train = np.ascontiguousarray(vectors[rows], dtype=np.float32)
    project = _projection(train, config.cell_dims)
    kmeans = faiss.Kmeans(project(train).shape[1], nlist, niter=10, seed=config.seed, spherical=True)
    kmeans.train(project(train))
    quantizer = faiss.IndexFlatIP(kmeans.d)
    quantizer.add(kmeans.centroids)
    nprobe = min(config.nprobe, nlist)
    probes = np.empty((n, nprobe), np.int32)
    for start in range(0, n, 65_536):
        _, probes[start : start + 65_536] = quantizer.search(project(vectors[start : start + 65_536]), nprobe)
    return Cells(probes, nlist, kind, kmeans.centroids if kmeans.d == dim else None)


def _projection(train: np.ndarray, dims: int):
    """Rows -> unit rows in the top-``dims`` PCA space of ``train`` (identity when dims >= the input's)."""
    pca = None
    if dims < train.shape[1]:
        pca = faiss.PCAMatrix(train.shape[1], dims)
        pca.train(train)

    def project(x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        y = pca.apply(x) if pca is not None else x.copy()
        faiss.normalize_L2(y)
        return y

    return project


def scan_cells(
    vectors: np.ndarray, cells: Cells, radius: float, progress: bool = False
) -> tuple[Edges, np.ndarray]:
    """All pairs (i < j) above ``radius`` where i lives in a cell j probes or j in one i probes, and each row's
    nearest cosine."""
    n, nprobe = cells.probes.shape
    home = cells.probes[:, 0]
    members = np.argsort(home, kind="stable")  # rows by cell, in row order within a cell
    member_bounds = np.concatenate([[0], np.cumsum(np.bincount(home, minlength=cells.nlist))])
    probed = cells.probes.ravel()
    order = np.argsort(probed, kind="stable")
    order //= nprobe  # in place: the rows probing each cell, cell by cell, in row order within a cell
    queries = order.astype(np.int32)
    del order
    query_bounds = np.concatenate([[0], np.cumsum(np.bincount(probed, minlength=cells.nlist))])
    nearest = np.full(n, -1.0, np.float32)
    earlier, later, cosine = [], [], []
    with tqdm(total=n * nprobe, desc="near-duplicates", unit="query", disable=not progress) as bar:
        for cell in range(cells.nlist):
            inside = members[member_bounds[cell] : member_bounds[cell + 1]]
            asking = queries[query_bounds[cell] : query_bounds[cell + 1]]
            if not len(inside):
                bar.update(len(asking))
                continue
            block = np.ascontiguousarray(vectors[inside]).T
            step = max(1, BLOCK_ELEMENTS // len(inside))
            for start in range(0, len(asking), step):
                rows = asking[start : start + step]
                sims = vectors[rows] @ block
                self_at = np.minimum(np.searchsorted(inside, rows), len(inside) - 1)
                is_self = inside[self_at] == rows
                sims[np.flatnonzero(is_self), self_at[is_self]] = -1.0  # a row is not its own neighbour
                nearest[rows] = np.maximum(nearest[rows], sims.max(axis=1))  # rows are distinct here
                q, m = np.nonzero(sims > radius)
                member, query = inside[m], rows[q]
                # A pair is found from either side: (member, query) when the member is earlier; when it is
                # later, only if the query's cell is not among the member's probes (else it is found there).
                forward = member < query
                found = forward | (cells.probes[member] != home[query][:, None]).all(axis=1)
                earlier.append(np.where(forward, member, query)[found].astype(np.int32))
                later.append(np.where(forward, query, member)[found].astype(np.int32))
                cosine.append(sims[q[found], m[found]])
                bar.update(len(rows))
    if not earlier:
        empty = np.zeros(0, np.int32)
        return Edges(empty, empty, np.zeros(0, np.float32)), nearest
    return Edges(np.concatenate(earlier), np.concatenate(later), np.concatenate(cosine)), nearest


def _by_later_row(edges: Edges, use: np.ndarray) -> Edges:
    """The pairs in ``use``, sorted by later row, most similar first, ties by earlier row."""
    earlier, later, cosine = edges.earlier[use], edges.later[use], edges.cosine[use]
    order = np.lexsort((earlier, -cosine, later))
    return Edges(earlier[order], later[order], cosine[order])


def _chunks(edges: Edges):
    """(earlier, later, cosine) Python tuples, a chunk of lists at a time, so no pass builds all at once."""
    for start in range(0, len(edges.later), LOOP_CHUNK):
        part = slice(start, start + LOOP_CHUNK)
        columns = (edges.earlier[part], edges.later[part], edges.cosine[part])
        yield from zip(*(column.tolist() for column in columns), strict=True)


def greedy_removal(n: int, edges: Edges, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """In row order, remove a row whose most similar earlier kept row is above ``threshold``."""
    keep = bytearray([1]) * n
    duplicate_of = np.full(n, -1, np.int64)
    best = np.zeros(n, np.float32)
    for i, j, c in _chunks(_by_later_row(edges, edges.cosine > threshold)):
        if keep[j] and keep[i]:  # i < j is final already; the first kept i is the most similar one
            keep[j] = 0
            duplicate_of[j] = i
            best[j] = c
    return np.frombuffer(keep, np.uint8).astype(bool), duplicate_of, best


def leader_clusters(keep: np.ndarray, edges: Edges, threshold: float) -> np.ndarray:
    """In row order, a kept row joins its most similar earlier leader above ``threshold``, else leads.

    Returns each row's leader (itself for a leader), -1 for removed rows: every member is within
    ``threshold`` of its leader, so no cluster chains across the embedding space.
    """
    n = len(keep)
    use = (edges.cosine > threshold) & keep[edges.earlier] & keep[edges.later]
    leads = bytearray(keep.astype(np.uint8).tobytes())  # a kept row leads until it joins an earlier leader
    cluster = np.where(keep, np.arange(n), -1)
    for i, j, _ in _chunks(_by_later_row(edges, use)):
        if leads[j] and leads[i]:  # i < j is settled already; the first leader i is the most similar one
            leads[j] = 0
            cluster[j] = i
    return cluster


def components(keep: np.ndarray, edges: Edges, threshold: float) -> np.ndarray:
    """Connected components of kept rows over edges above ``threshold``, named by their first row."""
    n = len(keep)
    use = (edges.cosine > threshold) & keep[edges.earlier] & keep[edges.later]
    graph = coo_matrix((np.ones(int(use.sum()), np.int8), (edges.earlier[use], edges.later[use])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    first = np.full(labels.max() + 1 if n else 0, n, np.int64)
    np.minimum.at(first, labels, np.arange(n))  # labels of removed rows are singletons, harmless
    return np.where(keep, first[labels], -1)


def near_duplicates(vectors: np.ndarray, config: DedupConfig, progress: bool = False) -> DedupResult:
    """Remove near duplicates (earlier rows win) and group what is left into leader clusters and components."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)  # no copy for a float32 matrix or memmap
    n = len(vectors)
    cells = assign_cells(vectors, config) if n else Cells(np.zeros((0, 1), np.int32), 1, "flat")
    edges, nearest = scan_cells(vectors, cells, min(config.threshold, config.cluster_threshold), progress)
    keep, duplicate_of, cosine = greedy_removal(n, edges, config.threshold)
    cluster = leader_clusters(keep, edges, config.cluster_threshold)
    component = components(keep, edges, config.cluster_threshold)
    return DedupResult(keep, duplicate_of, cosine, cluster, component, nearest, cells.kind, len(edges.later))
