"""Near-duplicate removal and clustering: exact semantics on hand-made vectors, IVF against brute force,
bounded leader clusters, and the split step's guarantee that no val/test row has a train row that close."""

from __future__ import annotations

import numpy as np
import pytest

from img2prompt.curate.config import SplitConfig
from img2prompt.curate.dedup import (
    DedupConfig,
    Edges,
    assign_cells,
    components,
    greedy_removal,
    leader_clusters,
    near_duplicates,
    scan_cells,
)
from img2prompt.curate.run import assign_splits, split_of
from img2prompt.prompt_table import prompt_id


def unit(rows: list[list[float]]) -> np.ndarray:
    v = np.asarray(rows, np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def at_angle(cosine: float) -> list[float]:
    """A 3-d unit vector with the given cosine to (1, 0, 0)."""
    return [cosine, float(np.sqrt(1 - cosine**2)), 0.0]


def test_earlier_rows_win_and_removed_rows_do_not_remove():
    # 0 and 1 are duplicates (0.95): 1 goes. 2 is 0.85 to 1 (removed) but only 0.65 to 0: it stays.
    a, b = np.array([1.0, 0, 0]), np.array(at_angle(0.95))
    rot = np.arctan2(b[1], b[0]) + np.arccos(0.85)
    c = [np.cos(rot), np.sin(rot), 0.0]
    vectors = unit([a.tolist(), b.tolist(), c, [0, 0, 1]])
    result = near_duplicates(vectors, DedupConfig(threshold=0.8, cluster_threshold=0.6))
    assert result.keep.tolist() == [True, False, True, True]
    assert result.duplicate_of.tolist() == [-1, 0, -1, -1]
    assert result.cosine[1] == pytest.approx(0.95, abs=1e-5)
    # 0 and 2 are 0.65 apart, above the cluster threshold: one cluster; 3 is alone
    assert result.cluster.tolist() == [0, -1, 0, 3]
    assert result.component.tolist() == [0, -1, 0, 3]


def test_a_removed_row_points_at_its_most_similar_kept_row():
    vectors = unit([[1, 0, 0], at_angle(0.85), at_angle(0.99)])
    result = near_duplicates(vectors, DedupConfig(threshold=0.8, cluster_threshold=0.7))
    assert result.keep.tolist() == [True, False, False]
    assert result.duplicate_of.tolist() == [-1, 0, 0]


def test_components_are_connected_components_of_kept_rows():
    edges = Edges(np.array([0, 1, 3, 0]), np.array([1, 2, 4, 4]), np.array([0.75, 0.72, 0.9, 0.5], np.float32))
    keep = np.array([True, True, True, True, True, True])
    assert components(keep, edges, 0.7).tolist() == [0, 0, 0, 3, 3, 5]
    keep[1] = False  # a removed row no longer links its neighbours
    assert components(keep, edges, 0.7).tolist() == [0, -1, 2, 3, 3, 5]


def test_a_row_joins_its_most_similar_earlier_leader_or_leads():
    # 1 joins 0; 2 is close to 1 only (1 is no leader): 2 leads; 3 is closer to 2 than to 0: joins 2
    edges = Edges(np.array([0, 1, 0, 2, 0]), np.array([1, 2, 3, 3, 4]),
                  np.array([0.9, 0.8, 0.75, 0.85, 0.6], np.float32))
    keep = np.ones(5, bool)
    assert leader_clusters(keep, edges, 0.7).tolist() == [0, 0, 2, 2, 4]
    keep[0] = False  # a removed row leads nothing: 1 leads and 2 joins it, so 3 (close to 2 only) leads
    assert leader_clusters(keep, edges, 0.7).tolist() == [-1, 1, 1, 3, 4]


def chain(length: int, cosine: float) -> np.ndarray:
    """Unit vectors, each at ``cosine`` to the next (so row k is at cosine**m to row k + m)."""
    vectors = np.zeros((length, 384), np.float64)
    vectors[0, 0] = 1.0
    for k in range(1, length):
        vectors[k] = cosine * vectors[k - 1]
        vectors[k, k] = np.sqrt(1 - cosine**2)
    return vectors.astype(np.float32)


def test_a_chain_is_one_component_but_many_bounded_clusters():
    vectors = chain(60, 0.75)  # consecutive rows 0.75 apart, rows two apart 0.56
    result = near_duplicates(vectors, DedupConfig(threshold=0.8, cluster_threshold=0.7))
    assert result.keep.all()
    assert len(set(result.component.tolist())) == 1  # components chain from one end to the other
    assert result.cluster.tolist() == [k - k % 2 for k in range(60)]  # leader clusters: pairs


def leaders_and_members(vectors: np.ndarray, config: DedupConfig):
    result = near_duplicates(vectors, config)
    kept = np.flatnonzero(result.keep)
    leaders = kept[result.cluster[kept] == kept]
    return result, kept, leaders


@pytest.mark.parametrize("index", ["flat", "ivf"])
def test_every_member_is_within_the_threshold_of_its_most_similar_earlier_leader(index):
    vectors = planted_duplicates(3000, seed=4)
    config = DedupConfig(index=index, nlist=32, cluster_threshold=0.5)
    result, kept, leaders = leaders_and_members(vectors, config)
    sims = vectors @ vectors.T
    members = kept[result.cluster[kept] != kept]
    assert len(members) > 300 and len(leaders) > 300
    assert (result.cluster[members] < members).all()
    assert (sims[members, result.cluster[members]] > 0.5 - 1e-6).all()  # the radius is bounded
    if index == "flat":  # exact search: leaders are never that close, and members chose the best leader
        between = sims[np.ix_(leaders, leaders)]
        np.fill_diagonal(between, -1)
        assert between.max() <= 0.5 + 1e-6
        to_leaders = np.where(leaders[None, :] < members[:, None], sims[np.ix_(members, leaders)], -2)
        assert np.array_equal(leaders[to_leaders.argmax(axis=1)], result.cluster[members])


def test_after_splitting_no_val_or_test_row_has_a_train_row_above_the_threshold():
    vectors = planted_duplicates(3000, seed=5)
    splits = SplitConfig(val=0.2, test=0.2)
    result = near_duplicates(vectors, DedupConfig(index="flat", cluster_threshold=0.5))
    kept = np.flatnonzero(result.keep)
    keys = [prompt_id(f"prompt {i}") for i in range(len(vectors))]  # a row's key: its (fake) prompt id
    split, moved = assign_splits([keys[i] for i in result.cluster[kept]], result.component[kept], splits)
    sims = vectors[kept] @ vectors[kept].T  # brute force over the kept rows

    def leaks(split: np.ndarray) -> int:
        train = split == "train"
        return int((sims[np.ix_(~train, train)] > 0.5).any(axis=1).sum())

    before = np.array([split_of(keys[i], splits) for i in result.cluster[kept]], dtype=object)
    assert leaks(before) > 20  # bounded clusters alone do leak
    assert leaks(split) == 0
    assert moved.sum() == (before != split).sum() > 20
    assert set(split[moved]) == {"train"} and set(before[moved]) == {"val", "test"}
    assert 0.05 < (split == "val").mean() < 0.25  # the purge leaves real validation and test sets
    assert 0.05 < (split == "test").mean() < 0.25


def test_greedy_removal_is_order_dependent_as_documented():
    edges = Edges(np.array([0]), np.array([1]), np.array([0.9], np.float32))
    keep, dup, _ = greedy_removal(2, edges, 0.8)
    assert keep.tolist() == [True, False] and dup.tolist() == [-1, 0]


def planted_duplicates(n: int, seed: int) -> np.ndarray:
    """Unit vectors in groups around random centres, at noise levels spanning cosine 0.5-0.97 to the centre."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n // 3, 384)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    noise = rng.uniform(0.2, 1.2, (n, 1)).astype(np.float32)
    vectors = centres[rng.integers(0, len(centres), n)] + noise * rng.standard_normal((n, 384)).astype(
        np.float32
    ) / np.sqrt(384)
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def test_ivf_removes_the_same_prompts_as_brute_force_on_10k():
    vectors = planted_duplicates(10_000, seed=0)
    exact = near_duplicates(vectors, DedupConfig(index="flat"))
    approx = near_duplicates(vectors, DedupConfig(index="ivf"))
    assert (exact.index_kind, approx.index_kind) == ("flat", "ivf")
    removed_exact, removed_approx = ~exact.keep, ~approx.keep
    assert 1000 < removed_exact.sum() < 5000  # the planted duplicates are really there
    recall = (removed_exact & removed_approx).sum() / removed_exact.sum()
    precision = (removed_exact & removed_approx).sum() / removed_approx.sum()
    assert recall >= 0.99 and precision >= 0.99


def test_same_input_same_result():
    vectors = planted_duplicates(3000, seed=1)
    config = DedupConfig(index="ivf", nlist=32)
    first, second = near_duplicates(vectors, config), near_duplicates(vectors, config)
    for name in ("keep", "duplicate_of", "cosine", "cluster", "component", "nearest"):
        assert np.array_equal(getattr(first, name), getattr(second, name)), name


def test_nearest_neighbour_cosine_is_exact_for_the_flat_index():
    vectors = planted_duplicates(500, seed=2)
    result = near_duplicates(vectors, DedupConfig())
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -1)
    assert result.index_kind == "flat"
    assert np.allclose(result.nearest, sims.max(axis=1), atol=1e-5)


def test_ivf_scan_finds_exactly_the_close_pairs_in_probed_cells():
    """The IVF contract: a close pair is found iff either row's cell is among the other's nprobe nearest cells
    (faiss IndexIVFFlat queried with every row), each pair once."""
    vectors = planted_duplicates(2000, seed=3)
    cells = assign_cells(vectors, DedupConfig(index="ivf", nlist=20, nprobe=3))
    edges, nearest = scan_cells(vectors, cells, 0.7)
    sims = vectors @ vectors.T
    i, j = np.nonzero(np.triu(sims > 0.7, k=1))
    j_sees_i = (cells.probes[j] == cells.probes[i, :1]).any(axis=1)
    i_sees_j = (cells.probes[i] == cells.probes[j, :1]).any(axis=1)
    assert (i_sees_j & ~j_sees_i).any()  # pairs that only the earlier row's probes reach are there to find
    probed = j_sees_i | i_sees_j
    expected = set(zip(i[probed].tolist(), j[probed].tolist(), strict=True))
    found = set(zip(edges.earlier.tolist(), edges.later.tolist(), strict=True))
    assert found == expected and len(expected) == len(edges.later)
    assert np.allclose(edges.cosine, sims[edges.earlier, edges.later], atol=1e-5)
    np.fill_diagonal(sims, -1)
    assert (nearest <= sims.max(axis=1) + 1e-5).all()  # the nearest row found, possibly not the true one


def test_empty_input():
    result = near_duplicates(np.zeros((0, 384), np.float32), DedupConfig())
    assert len(result.keep) == 0 and len(result.cluster) == 0
