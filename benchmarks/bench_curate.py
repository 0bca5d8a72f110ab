"""Benchmark: curation of the prompts and captions in ../shared/data, and a projection to 8.6M prompts.

Reads every source through the rules and exact dedup (all of it), then runs the real stage (``curate``) from
an empty cache (or ``--cache-dir``, an earlier run's), on everything or on the first ``--limit`` prompts of
each source, and reports the clusters, the splits after the leakage purge, and prompts/s
for reading + rules, embedding (exact target embedder) and near-duplicate removal; the recall of the IVF
search against brute force on (up to ``--recall-sample``) real embeddings; the int8 embedder's rate; and
the projected time for all of ../shared/data and for 8.6M prompts (the winners' PROMPTS_HQ + a COYO share)
from those rates. Dedup is projected from bench_dedup.py's 1M-vector seconds (the scan grows as n^1.5 with
nlist = 2 sqrt(n)) when given.

    .venv/bin/python benchmarks/bench_curate.py --limit 1800 --rate-sample 2000 --dedup-1m-s 333.4
    .venv/bin/python benchmarks/bench_curate.py --cache-dir /tmp/issue3/embed_cache --dedup-1m-s 234.1
    .venv/bin/python benchmarks/bench_curate.py --device cuda --dedup-1m-s ...  # also the GPU embedding rate
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

from img2prompt.curate.config import CurateConfig
from img2prompt.curate.dedup import DedupConfig, near_duplicates
from img2prompt.curate.rules import PromptRules
from img2prompt.curate.run import curate, embed, read_candidates
from img2prompt.curate.sources import BadRows
from img2prompt.embedding import TextEmbedder
from img2prompt.sections import load_section

TARGET = 8_600_000


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/curate/shared_data.yaml")
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_curate"))
    parser.add_argument("--device", default="cpu", help="cpu, or cuda to measure the GPU embedding rate too")
    parser.add_argument("--limit", type=int, default=None, help="embed + dedup only the first N of each source")
    parser.add_argument("--recall-sample", type=int, default=50_000)
    parser.add_argument("--rate-sample", type=int, default=5_000, help="prompts for the int8 / GPU rates")
    parser.add_argument("--dedup-1m-s", type=float, default=None, help="seconds of bench_dedup.py at 1M")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="reuse this embedding cache (kept outside --out): the embed rate is then a cache read")
    args = parser.parse_args()

    overrides = [f"curate.out={args.out}", "curate.progress=false"]
    if args.cache_dir:
        overrides.append(f"curate.embedding.cache_dir={args.cache_dir}")
    full = load_section(args.config, "curate", CurateConfig, overrides)
    # reading + rules + exact dedup over every source, in full (cheap next to embedding)
    started = time.perf_counter()
    all_candidates, per_source = read_candidates(full, PromptRules(full.rules), BadRows())
    read_all_s = time.perf_counter() - started
    read_all = sum(c["read"] for c in per_source)
    print(f"all sources: read {read_all} prompts, {len(all_candidates.texts)} after rules + exact dedup, "
          f"read + rules + exact dedup in {read_all_s:.1f} s = {read_all / read_all_s:.0f} prompts/s")

    config = full
    if args.limit:
        limited = [source.model_copy(update={"limit": args.limit}) for source in full.sources]
        config = full.model_copy(update={"sources": limited})
    shutil.rmtree(args.out, ignore_errors=True)
    print(f"embedding cache: {args.cache_dir or 'empty (fresh embeddings)'}")
    started = time.perf_counter()
    curate(config)
    wall = time.perf_counter() - started
    stats = json.loads((args.out / "stats.json").read_text())
    t, totals = stats["timings_s"], stats["totals"]
    read, candidates = totals["read"], totals["after_rules_and_exact_dedup"]
    rates = {
        "read_and_rules": read / t["read_and_rules"],
        "embed": candidates / t["embed"],
        "dedup": candidates / t["dedup"],
        "end_to_end": read / wall,
    }
    print(f"curate ({'all' if not args.limit else f'first {args.limit} of each source'}): read {read} prompts, "
          f"{candidates} after rules + exact dedup, {totals['kept']} kept, index {totals['index']}, "
          f"{totals['pairs_above_cluster_threshold']} pairs above the cluster threshold")
    print(f"clusters: {totals['clusters']}, largest {totals['largest_cluster']}, p99 size "
          f"{totals['cluster_size_p99']:g} (largest connected component {totals['largest_component']}); "
          f"splits: train {totals['train']}, val {totals['val']}, test {totals['test']}, "
          f"{totals['moved_to_train']} val/test prompts moved to train by the leakage purge")
    print(f"wall {wall:.1f} s: " + ", ".join(f"{k} {v:.1f} s" for k, v in t.items()))
    print("rates (prompts/s): " + ", ".join(f"{k} {v:.0f}" for k, v in rates.items()))

    # IVF vs brute force on real embeddings (candidates before near dedup, so real near duplicates exist)
    bad = BadRows()
    cands, _ = read_candidates(config, PromptRules(config.rules), bad)
    vectors = embed(cands.texts, config.embedding, args.out, progress=False)  # all cached now
    rows = np.unique(np.linspace(0, len(vectors) - 1, min(args.recall_sample, len(vectors))).astype(np.int64))
    sample = vectors[rows]
    exact = near_duplicates(sample, DedupConfig(index="flat"))
    approx = near_duplicates(sample, config.dedup.model_copy(update={"index": "ivf"}))
    both = int((~exact.keep & ~approx.keep).sum())
    recall = both / max(1, int((~exact.keep).sum()))
    precision = both / max(1, int((~approx.keep).sum()))
    print(f"IVF vs flat on {len(rows)} real embeddings: flat removes {(~exact.keep).sum()}, IVF "
          f"{(~approx.keep).sum()}, recall {recall:.4f}, precision {precision:.4f}")

    texts = cands.texts[: args.rate_sample]
    int8 = TextEmbedder(backend="int8")
    start = time.perf_counter()
    int8.encode(texts)
    int8_rate = len(texts) / (time.perf_counter() - start)
    print(f"int8 embedding rate on {len(texts)} prompts: {int8_rate:.0f} prompts/s")
    exact_rate = rates["embed"]
    if args.cache_dir:  # the stage read its embeddings from the cache: time the exact embedder afresh
        plain = TextEmbedder()
        start = time.perf_counter()
        plain.encode(texts)
        exact_rate = len(texts) / (time.perf_counter() - start)
        print(f"exact embedding rate on {len(texts)} prompts (no cache): {exact_rate:.0f} prompts/s")
    all_s = read_all_s + len(all_candidates.texts) / exact_rate + t["dedup"] * (
        len(all_candidates.texts) / candidates) ** 1.5
    print(f"all of {args.config} at these rates: {hours(all_s)}")
    gpu_rate = None
    if args.device != "cpu":
        gpu = TextEmbedder(device=args.device, max_tokens=16384)
        gpu.encode(texts[:256])  # warm-up (CUDA context, kernels)
        start = time.perf_counter()
        gpu.encode(texts)
        gpu_rate = len(texts) / (time.perf_counter() - start)
        print(f"exact embedding rate on {args.device}: {gpu_rate:.0f} prompts/s")

    kept_share = len(all_candidates.texts) / read_all
    dedup_s = (args.dedup_1m_s * (TARGET * kept_share / 1e6) ** 1.5 if args.dedup_1m_s
               else t["dedup"] * (TARGET * kept_share / candidates) ** 1.5)
    read_s = TARGET * read_all_s / read_all
    embed_s = TARGET * kept_share / exact_rate
    print(f"projection for {TARGET:,} prompts on this machine (2 cores): read+rules {hours(read_s)}, "
          f"embed {hours(embed_s)}, dedup {hours(dedup_s)}, total {hours(read_s + embed_s + dedup_s)}")
    if gpu_rate:
        gpu_embed = TARGET * kept_share / gpu_rate
        print(f"projection with {args.device} embedding: embed {hours(gpu_embed)}, "
              f"total {hours(read_s + gpu_embed + dedup_s)} (read and dedup on CPU)")
    else:
        print("GPU embedding rate: not measured (no GPU here); rerun with --device cuda on a GPU machine")


if __name__ == "__main__":
    main()
