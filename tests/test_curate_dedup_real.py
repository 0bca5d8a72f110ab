"""The approximate (IVF) near-dedup index against brute force on real prompts, as the issue states it: on a
10k-prompt sample the approximate index removes the same prompts as brute force (recall >= 0.99)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from img2prompt.curate.config import CurateConfig
from img2prompt.curate.dedup import DedupConfig, near_duplicates
from img2prompt.curate.rules import PromptRules
from img2prompt.curate.sources import BadRows, read_source
from img2prompt.sections import load_section

SHARED_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "curate" / "shared_data.yaml"
SAMPLE = 10_000


def curate_candidates_sample(shared_data: Path, size: int, seed: int) -> list[str]:
    """``size`` prompts drawn uniformly (fixed seed) from every source of configs/curate/shared_data.yaml,
    in config order, through the curation rules and exact dedup: what the near-dedup step is given."""
    config = load_section(SHARED_CONFIG, "curate", CurateConfig)
    pool: dict[str, None] = {}
    for source in config.sources:
        path = source.path.replace("../shared/data", str(shared_data)) if source.path else None
        pool.update(dict.fromkeys(read_source(source.type, path, source.options(), BadRows())))
    raw = list(pool)
    picks = np.sort(np.random.default_rng(seed).choice(len(raw), int(size * 1.1), replace=False))
    rules = PromptRules(config.rules)
    cleaned = (rules.apply(raw[i]) for i in picks)
    candidates = list(dict.fromkeys(text for text in cleaned if text is not None))
    assert len(candidates) >= size  # the 10% margin covers what the rules drop
    return candidates[:size]


def test_ivf_removes_the_same_real_prompts_as_brute_force_on_10k(shared_data, text_embedder):
    """Embedded with the exact target embedder, as curate does (~25 s of the test on 2 cores)."""
    vectors = text_embedder.encode(curate_candidates_sample(shared_data, SAMPLE, seed=0))
    exact = near_duplicates(vectors, DedupConfig(index="flat", threshold=0.8))
    approx = near_duplicates(vectors, DedupConfig(index="ivf", threshold=0.8))
    assert (exact.index_kind, approx.index_kind) == ("flat", "ivf")
    removed_exact, removed_approx = ~exact.keep, ~approx.keep
    assert removed_exact.sum() > 100  # real near duplicates are there to find (396 at seed 0)
    both = (removed_exact & removed_approx).sum()
    recall, precision = both / removed_exact.sum(), both / removed_approx.sum()
    assert recall >= 0.99 and precision >= 0.99
