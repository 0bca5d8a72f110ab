"""Benchmark: near-duplicate removal of N random 384-d unit vectors (default 1M) with the stage's dedup.

Random unit vectors in 384-d are almost never closer than cosine 0.7, so this measures the search cost
(k-means cells, the blocked scan at the cluster threshold, greedy pass, leader clusters, components) at
scale; the quality of the IVF search on real prompts is measured by tests/test_curate_dedup.py and bench_curate.py.
``--faiss`` also times faiss ``IndexIVFFlat.range_search`` over the same cells and checks it finds the
same pairs, each from either of its rows (the reason the stage scans cells itself).

    .venv/bin/python benchmarks/bench_dedup.py --n 1000000
    .venv/bin/python benchmarks/bench_dedup.py --n 100000 --faiss
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import faiss
import numpy as np

from img2prompt.curate.dedup import (
    DedupConfig,
    assign_cells,
    components,
    greedy_removal,
    leader_clusters,
    scan_cells,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--nprobe", type=int, default=DedupConfig().nprobe)
    parser.add_argument("--index", default="auto", choices=["auto", "flat", "ivf"])
    parser.add_argument("--cell-dims", type=int, default=DedupConfig().cell_dims)
    parser.add_argument("--faiss", action="store_true",
                        help="also time faiss IndexIVFFlat.range_search (needs --cell-dims 384)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    vectors = rng.standard_normal((args.n, 384), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    # plant 1% near duplicates so the greedy pass and the components have work to do
    source, copy = rng.choice(args.n, (2, args.n // 200), replace=False)
    vectors[copy] = vectors[source] + 0.02 * rng.standard_normal((len(copy), 384), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    config = DedupConfig(nprobe=args.nprobe, index=args.index, cell_dims=args.cell_dims)
    radius = min(config.threshold, config.cluster_threshold)
    print(f"{args.n:,} vectors, faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads")

    cpu = [time.process_time()]
    start = time.perf_counter()
    cells = assign_cells(vectors, config)
    assigned = time.perf_counter()
    cpu.append(time.process_time())
    edges, _ = scan_cells(vectors, cells, radius)
    scanned = time.perf_counter()
    cpu.append(time.process_time())
    keep, _, _ = greedy_removal(args.n, edges, config.threshold)
    leader_clusters(keep, edges, config.cluster_threshold)
    components(keep, edges, config.cluster_threshold)
    done = time.perf_counter()
    cpu.append(time.process_time())
    print(f"CPU seconds (all threads): cells {cpu[1] - cpu[0]:.1f}, scan {cpu[2] - cpu[1]:.1f}, "
          f"greedy + groups {cpu[3] - cpu[2]:.1f}, total {cpu[3] - cpu[0]:.1f} "
          f"(= {(cpu[3] - cpu[0]) / 2:.1f} s on 2 dedicated cores)")
    print(f"index {cells.kind} (nlist {cells.nlist}, nprobe {cells.probes.shape[1]}): k-means + assign "
          f"{assigned - start:.1f} s, scan {scanned - assigned:.1f} s, greedy + groups {done - scanned:.1f} s, "
          f"total {done - start:.1f} s = {args.n / (done - start):.0f} vectors/s")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"pairs above {radius}: {len(edges.cosine)} (planted {len(copy)}), removed {(~keep).sum()}, "
          f"CPU time {usage.ru_utime + usage.ru_stime:.0f} s, peak RSS {usage.ru_maxrss / 1e6:.2f} GB, "
          f"load average {os.getloadavg()[0]:.1f}")

    if args.faiss and cells.centroids is not None:
        quantizer = faiss.IndexFlatIP(384)
        quantizer.add(cells.centroids)
        index = faiss.IndexIVFFlat(quantizer, 384, cells.nlist, faiss.METRIC_INNER_PRODUCT)
        index.add(vectors)  # the quantizer is trained: it holds the same centroids
        index.nprobe = cells.probes.shape[1]
        start = time.perf_counter()
        lims, _, ids = index.range_search(vectors, radius)
        elapsed = time.perf_counter() - start
        rows = np.repeat(np.arange(args.n), np.diff(lims).astype(np.int64))
        other = ids != rows  # a pair found from either of its rows, as the stage does
        found = zip(np.minimum(ids, rows)[other].tolist(), np.maximum(ids, rows)[other].tolist(), strict=True)
        same = set(found) == set(zip(edges.earlier.tolist(), edges.later.tolist(), strict=True))
        print(f"faiss IndexIVFFlat.range_search over the same cells: {elapsed:.1f} s "
              f"(blocked scan {scanned - assigned:.1f} s, {elapsed / (scanned - assigned):.1f}x faster); "
              f"same pairs: {same}")


if __name__ == "__main__":
    main()
