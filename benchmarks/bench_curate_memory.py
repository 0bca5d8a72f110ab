"""Benchmark: peak memory (RSS) of the curation stage on N synthetic prompts, and its projection to 8.6M.

Runs the real ``curate`` after reading (embedding fill, near dedup, table, report) on ``--n`` synthetic
prompts. Two seams keep it about memory, not about the text model: ``read_candidates`` returns the synthetic
prompts, and the text embedder returns random unit vectors (1% planted near duplicates), a chunk at a time
through the stage's own ``embed``; with ``--group G`` they come in groups of G around a centre, pairwise
cosine ~0.75, so the grouping passes hold ~N (G - 1) / 2 pairs above the cluster threshold (their memory).
The peak RSS after each step is read from ``getrusage`` (it only grows), so the step that raised it shows.
Run it against an older checkout with ``PYTHONPATH=<old>/src`` to compare before and after.

    .venv/bin/python benchmarks/bench_curate_memory.py --n 1000000
    .venv/bin/python benchmarks/bench_curate_memory.py --n 1000000 --group 20
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np

import img2prompt.curate.run as stage
import img2prompt.embedding
from img2prompt.prompt_table import prompt_id

WORDS = ["a", "photo", "of", "the", "red", "old", "small", "cat", "dog", "house", "tree", "city", "river", "mountain",
         "portrait", "painting", "by", "artist", "highly", "detailed", "digital", "art", "trending", "on",
         "artstation", "cinematic", "lighting", "sharp", "focus", "4k"]


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kilobytes on Linux


class RandomEmbedder:
    """Stands in for TextEmbedder: unit vectors from a seed per chunk, the last 1% near copies of others."""

    cache = None
    group = 1  # rows per group around a centre (1: independent rows)

    def __init__(self, **_: object) -> None:
        self.calls = 0

    def encode(self, prompts: list[str]) -> np.ndarray:
        rng = np.random.default_rng(self.calls)
        self.calls += 1
        vectors = rng.standard_normal((len(prompts), 384), dtype=np.float32)
        if self.group > 1:  # unit centre + noise of norm sqrt(1/3): cosine 0.75 between members
            centres = rng.standard_normal((-(-len(prompts) // self.group), 384), dtype=np.float32)
            centres /= np.linalg.norm(centres, axis=1, keepdims=True)
            vectors = np.repeat(centres, self.group, axis=0)[: len(prompts)] + vectors * np.sqrt(1 / 3 / 384)
        copies = len(prompts) // 100
        if copies:
            vectors[-copies:] = vectors[:copies] + 0.02 * rng.standard_normal((copies, 384), dtype=np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def synthetic_candidates(n: int, seed: int = 0) -> stage.Candidates:
    rng = np.random.default_rng(seed)
    candidates = stage.Candidates()
    lengths = rng.integers(8, 25, n)
    picks = rng.integers(0, len(WORDS), lengths.sum())
    start = 0
    for i, length in enumerate(lengths.tolist()):
        text = f"prompt {i} " + " ".join(WORDS[w] for w in picks[start : start + length].tolist())
        start += length
        candidates.add(text, prompt_id(text), 0, "hq")
    return candidates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_curate_memory"))
    parser.add_argument("--chunk", type=int, default=65_536)
    parser.add_argument("--group", type=int, default=1, help="rows per group of mutually close rows")
    args = parser.parse_args()

    shutil.rmtree(args.out, ignore_errors=True)
    config = stage.CurateConfig(
        out=args.out, progress=False, sources=[{"name": "synthetic", "type": "text", "path": __file__}],
        embedding={"chunk": args.chunk},
    )
    print(f"{args.n:,} prompts; baseline peak RSS {peak_gb():.2f} GB (interpreter and libraries)")
    started = time.perf_counter()
    candidates = synthetic_candidates(args.n)
    steps = [("candidates", time.perf_counter() - started, peak_gb())]
    stage.read_candidates = lambda *_: (candidates, [Counter(read=args.n)])
    RandomEmbedder.group = args.group
    img2prompt.embedding.TextEmbedder = RandomEmbedder

    def measured(name: str, function):
        def wrapper(*a, **k):
            start = time.perf_counter()
            result = function(*a, **k)
            steps.append((name, time.perf_counter() - start, peak_gb()))
            return result

        return wrapper

    for name in ("embed", "near_duplicates", "build_table", "write_table", "_write_outputs"):
        setattr(stage, name, measured(name, getattr(stage, name)))
    stage.curate(config)
    matrix_gb = args.n * 384 * 4 / 1e9
    print(f"embedding matrix: {matrix_gb:.2f} GB")
    for name, seconds, peak in steps:
        print(f"after {name:<16} {seconds:7.1f} s   peak RSS {peak:6.2f} GB")
    stats = json.loads((args.out / "stats.json").read_text())["totals"]
    print(f"kept {stats['kept']}, pairs above the cluster threshold {stats['pairs_above_cluster_threshold']}, "
          f"clusters {stats['clusters']} (largest {stats['largest_cluster']}), "
          f"moved to train {stats['moved_to_train']}")
    print(f"peak RSS {peak_gb():.2f} GB = {peak_gb() / matrix_gb:.2f} x the embedding matrix")


if __name__ == "__main__":
    main()
