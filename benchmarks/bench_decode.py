"""Decoding quality against work: how close to a held-out real prompt's embedding can decoded text get?

Targets: the exact embeddings of the prompts of ``dissim_pairs_025_v7_validation.txt``. Bank: every other
prompt file of ``../shared/data/prompts`` (targets removed). Reports, on all targets, the constant-mean
and nearest-bank-prompt baselines, then on a fixed random sample of targets the decoder's mean cosine, the
texts it embedded exactly and its latency per query for each mode (a fixed amount of search; ``--budget``
adds a time cap to every mode). ``--backend-sample N`` also times the one-time dictionary build per backend
on N phrases (exact fp32 vs int8 ONNX), and ``--dictionary-backend`` picks the one the decoder uses. The bank,
target and int8 dictionary embeddings are cached in ``--work``; the decoder's own exact embedder (which also
embeds an exact dictionary) has no cache, so a text scored for one mode is not free for the next.

    .venv/bin/python benchmarks/bench_decode.py --targets 200 --modes fast best --backend-sample 20000
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from img2prompt.decode import DecodeConfig
from img2prompt.dictionary import load_decoder
from img2prompt.embedding import TextEmbedder
from img2prompt.prompt_table import prompt_id, write_table

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "prompts"
TARGETS = "dissim_pairs_025_v7_validation.txt"
PLAIN = ("900k_dedup_08_split_dedup_wt_wv.txt", "openprompts_dedup_085_075_diff_pprc_085wt_075wv.txt",
         "prompts_filtered_4.0.txt")
TSV = ("dissim_pairs_all_openprompts2.txt", "dissim_pairs_all_gustavosta_valid.txt")


def read_prompts(path: Path) -> list[str]:
    """One prompt per line, or the third column of the ``idx, score, prompt, image`` TSV files."""
    lines = path.read_text(encoding="utf-8").splitlines()
    if path.name.startswith("dissim_pairs"):
        lines = [parts[2] for parts in (line.split("\t") for line in lines) if len(parts) >= 3]
    return list(dict.fromkeys(line.strip() for line in lines if line.strip()))


class CountingEmbedder:
    """The decoder's exact embedder, counting the texts it embeds (the search's work)."""

    def __init__(self, inner: TextEmbedder):
        self.inner, self.count = inner, 0
        self.token_ids, self.tag = inner.token_ids, inner.tag

    def encode(self, texts, **options):
        self.count += len(texts)
        return self.inner.encode(texts, **options)


def time_backends(phrases: list[str], repeats: int = 3) -> None:
    """The one-time dictionary build's rate with each backend, uncached, in interleaved repeats on equal
    slices of ``phrases`` (what picked the default): medians and the ratio of one run."""
    embedders = {backend: TextEmbedder(backend=backend) for backend in ("exact", "int8")}
    rates: dict[str, list[float]] = {backend: [] for backend in embedders}
    for part in np.array_split(np.array(phrases, dtype=object), repeats):
        for backend, embedder in embedders.items():
            start = time.perf_counter()
            embedder.encode(list(part))
            rates[backend].append(len(part) / (time.perf_counter() - start))
    exact = float(np.median(rates["exact"]))
    print(f"| dictionary backend | median phrases/s ({repeats} x {len(phrases) // repeats} phrases, no cache) "
          "| each repeat | vs exact |\n|---|---|---|---|")
    for backend, values in rates.items():
        print(f"| {backend} | {np.median(values):.0f} | {', '.join(f'{v:.0f}' for v in values)} | "
              f"{np.median(values) / exact:.2f}x |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--work", type=Path, default=Path("runs/bench_decode"))
    parser.add_argument("--targets", type=int, default=200, help="targets decoded per mode")
    parser.add_argument("--modes", nargs="+", default=["fast", "best"])
    parser.add_argument("--budget", type=float, default=None, help="a time cap per query, for every mode")
    parser.add_argument("--backend-sample", type=int, default=0, help="time the dictionary build on N phrases")
    parser.add_argument("--dictionary-backend", choices=["exact", "int8"], default="exact",
                        help="the backend that embeds the decoder's phrase dictionary")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk", type=int, nargs=2, default=[0, 1], metavar=("I", "N"),
                        help="decode only the I-th of N equal slices of the sample (to split a long run)")
    parser.add_argument("--csv", type=Path, help="write one row per target and budget here")
    args = parser.parse_args()

    targets = read_prompts(args.data / TARGETS)
    held_out = set(targets)
    bank = list(dict.fromkeys(p for name in PLAIN + TSV for p in read_prompts(args.data / name)
                              if p not in held_out))
    cache = args.work / "cache"
    embedder = TextEmbedder(cache_dir=cache)
    target_vectors = embedder.encode(targets)
    start = time.perf_counter()
    bank_vectors = embedder.encode(bank, progress=True)
    print(f"bank: {len(bank)} prompts embedded in {time.perf_counter() - start:.0f} s; targets: {len(targets)}")
    table = args.work / "bank.parquet"
    frame = pd.DataFrame({"prompt_id": [prompt_id(p) for p in bank], "prompt": bank, "source": "bench",
                          "tier": "hq", "cluster": range(len(bank)), "split": "train"})
    write_table(frame, bank_vectors, table)

    mean = bank_vectors.mean(axis=0)
    mean /= np.linalg.norm(mean)
    print(f"constant mean vector: {float((target_vectors @ mean).mean()):.4f} mean cosine ({len(targets)} targets)")
    start = time.perf_counter()
    decoder = load_decoder(table, DecodeConfig(cache_dir=str(cache), budget_s=args.budget,
                                               dictionary_backend=args.dictionary_backend),
                           embedder=CountingEmbedder(TextEmbedder()))
    print(f"decoder: {len(decoder.phrases)} dictionary phrases, built in {time.perf_counter() - start:.0f} s")
    if args.backend_sample:
        time_backends(decoder.phrases[: args.backend_sample])
    nearest = np.array([decoder.nearest(v, k=1)[0][1] for v in target_vectors])
    print(f"nearest bank prompt: {nearest.mean():.4f} mean cosine ({len(targets)} targets)")

    sample = np.random.default_rng(args.seed).choice(len(targets), size=min(args.targets, len(targets)),
                                                      replace=False)
    sample = np.array_split(sample, args.chunk[1])[args.chunk[0]]
    print(f"nearest bank prompt on the {len(sample)}-target sample: {nearest[sample].mean():.4f}")
    print("| mode | mean cosine | median cosine | exact texts/query (median) | median s/query | p90 s/query "
          "| max s/query | capped |")
    print("|---|---|---|---|---|---|---|---|")
    rows = []
    for mode in args.modes:
        cosines, seconds, work, capped = [], [], [], 0
        for i in sample:
            decoder.embedder.count = 0
            start = time.perf_counter()
            result = decoder.decode(target_vectors[i], mode=mode)
            seconds.append(time.perf_counter() - start)
            cosines.append(result.cosine)
            work.append(decoder.embedder.count)
            capped += result.capped
            rows.append({"target": int(i), "mode": mode, "cosine": result.cosine, "seconds": seconds[-1],
                         "exact_texts": work[-1], "capped": result.capped, "nearest": nearest[i],
                         "text": result.text})
        print(f"| {mode} | {np.mean(cosines):.4f} | {np.median(cosines):.4f} | {np.median(work):.0f} | "
              f"{np.median(seconds):.2f} | {np.percentile(seconds, 90):.2f} | {np.max(seconds):.2f} | {capped} |",
              flush=True)
    if args.csv is not None:
        pd.DataFrame(rows).to_csv(args.csv, index=False)
    for i in sample[:5]:
        result = decoder.decode(target_vectors[i], mode=args.modes[-1])
        print(f"\ntarget:  {targets[i]}\nnearest: {decoder.nearest(target_vectors[i], 1)[0][0]}\n"
              f"decoded: {result.text}  ({result.cosine:.3f})")


if __name__ == "__main__":
    main()
