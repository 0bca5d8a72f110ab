"""Benchmark: IVF near-dedup against brute force on a dense sample of real prompts.

The uniform 10k sample of tests/test_curate_dedup_real.py holds mostly near-exact duplicates, which any
partition finds. This sample is the first 5,000 lines of two prompt files of ../shared/data, where similar
prompts sit together: many pairs just above the 0.8 threshold, the ones IVF misses. It prints, for each
setting, what brute force and IVF remove and the recall/precision of IVF's removed set.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from img2prompt.curate.dedup import DedupConfig, near_duplicates
from img2prompt.embedding import TextEmbedder

FILES = ("openprompts_dedup_085_075_diff_pprc_085wt_075wv.txt", "dissim_pairs_all_openprompts2.txt")


def first_lines(path: Path, count: int) -> list[str]:
    lines = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                lines.append(line.strip())
            if len(lines) == count:
                break
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=Path, default=Path("../shared/data/prompts"))
    parser.add_argument("--per-file", type=int, default=5000)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "img2prompt")
    args = parser.parse_args()
    if not all((args.prompts / name).is_file() for name in FILES):
        parser.error(f"{args.prompts}: needs {' and '.join(FILES)} (../shared/data/prompts)")
    texts = list(dict.fromkeys(t for name in FILES for t in first_lines(args.prompts / name, args.per_file)))
    vectors = TextEmbedder(cache_dir=args.cache).encode(texts)
    exact = ~near_duplicates(vectors, DedupConfig(index="flat")).keep
    print(f"{len(texts)} prompts; brute force removes {exact.sum()} at cosine > 0.8")
    for cell_dims, nprobe in ((64, 16), (384, 16), (384, 32), (384, 64)):
        removed = ~near_duplicates(vectors, DedupConfig(index="ivf", cell_dims=cell_dims, nprobe=nprobe)).keep
        both = (exact & removed).sum()
        print(f"IVF cells in {cell_dims}-d, nprobe {nprobe}: removes {removed.sum()}, "
              f"recall {both / exact.sum():.4f}, precision {both / removed.sum():.4f}")


if __name__ == "__main__":
    main()
