"""Target-embedder throughput: ours (token-budget batches) vs plain sentence-transformers, and int8.

The prompts are split into chunks; each chunk is embedded by every variant in turn (interleaved, so a
noisy neighbour slows all variants alike), and we report the median per-chunk rate and the ratio of medians.

    .venv/bin/python benchmarks/bench_embedding.py [--prompts FILE] [--chunks 5] [--limit N]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from img2prompt.embedding import TextEmbedder

DEFAULT_PROMPTS = Path(__file__).resolve().parents[2] / "shared/data/prompts/900k_dedup_08_split_dedup_wt_wv.txt"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=Path, default=DEFAULT_PROMPTS)
    parser.add_argument("--chunks", type=int, default=5)
    parser.add_argument("--limit", type=int, default=0, help="Use only the first N prompts (0: all).")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    prompts = [line.strip() for line in args.prompts.read_text(encoding="utf-8").splitlines() if line.strip()]
    prompts = prompts[: args.limit] if args.limit else prompts
    exact = TextEmbedder()
    int8 = TextEmbedder(backend="int8")
    plain = SentenceTransformer(exact.model_path, device="cpu")
    variants = {
        "plain encode(batch_size=256)": lambda p: plain.encode(p, batch_size=256, normalize_embeddings=True),
        "img2prompt exact": exact.encode,
        "img2prompt int8": int8.encode,
    }
    rates: dict[str, list[float]] = {name: [] for name in variants}
    outputs: dict[str, list[np.ndarray]] = {name: [] for name in variants}
    for chunk in np.array_split(np.arange(len(prompts)), args.chunks):
        batch = [prompts[i] for i in chunk]
        for name, encode in variants.items():
            start = time.perf_counter()
            outputs[name].append(np.asarray(encode(batch), dtype=np.float32))
            rates[name].append(len(batch) / (time.perf_counter() - start))
    result = {name: np.concatenate(chunks) for name, chunks in outputs.items()}
    reference = result["plain encode(batch_size=256)"]
    print(f"# {len(prompts)} prompts from {args.prompts.name}, {args.chunks} interleaved chunks, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    base = statistics.median(rates["plain encode(batch_size=256)"])
    print("| variant | median prompts/s | vs plain | max abs diff to plain | mean cosine to plain |")
    print("|---|---|---|---|---|")
    for name in variants:
        median = statistics.median(rates[name])
        diff = float(np.abs(result[name] - reference).max())
        cosine = float((result[name] * reference).sum(axis=1).mean())
        print(f"| {name} | {median:.0f} | {median / base:.2f}x | {diff:.1e} | {cosine:.5f} |")


if __name__ == "__main__":
    main()
