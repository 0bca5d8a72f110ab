"""The curation stage: sources -> rules -> exact dedup -> target embeddings -> near dedup -> tiers, splits.

``curate(config)`` writes into ``config.out``: ``prompts.parquet`` (the prompt table of DESIGN.md),
``report.html`` with its PNGs, ``stats.json`` (every count and timing, bad rows per file), ``bad_rows.tsv``
(every malformed line, row, item or row group skipped, with its file and position) and ``config.yaml``.
Sources are read hq first, then lq, each in config order: when two prompts are (near) duplicates, the
earlier one stays, so an hq prompt is never dropped in favour of a caption crawled from the web.

Embeddings are computed in chunks through the embedder's on-disk cache (``<out>/cache`` by default), so a
rerun after a kill reuses every chunk already done. They are held once, in a float32 memmap
(``<out>/candidate_embeddings.npy``, deleted when the table is written): dedup reads it in place and the
table is written from it a row group at a time. The same input and config give the same table.

Splits are drawn per (bounded, leader) cluster; then every val/test prompt connected to a train prompt by
a chain of pairs above the cluster threshold is moved to train (``moved_to_train`` in the counts), so no
val/test prompt has a train prompt that close.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from img2prompt.config import check_paths, write_resolved
from img2prompt.curate.config import CurateConfig, EmbeddingConfig, SourceConfig, SplitConfig
from img2prompt.curate.dedup import DedupResult, near_duplicates
from img2prompt.curate.report import DuplicateExample, ReportData, write_report
from img2prompt.curate.rules import FILTERS, PromptRules, words
from img2prompt.curate.sources import BadRows, bad_rows_file, expand_paths, read_source
from img2prompt.errors import Img2PromptError, fail
from img2prompt.files import all_or_none, cannot_write, make_folder, write_text_atomic
from img2prompt.prompt_table import prompt_id, write_table
from img2prompt.space import EMBEDDING_DIM

TABLE_NAME = "prompts.parquet"
BAD_ROWS_NAME = "bad_rows.tsv"
VECTORS_NAME = "candidate_embeddings.npy"


class Candidates:
    """Prompts that passed the rules and are not exact duplicates, in priority order."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.ids: list[str] = []
        self.source: list[int] = []
        self.tier: list[str] = []
        self._seen: set[str] = set()

    def add(self, text: str, pid: str, source: int, tier: str) -> bool:
        if pid in self._seen:
            return False
        self._seen.add(pid)
        self.texts.append(text)
        self.ids.append(pid)
        self.source.append(source)
        self.tier.append(tier)
        return True


def curate(config: CurateConfig) -> Path:
    """Run the whole stage; returns the path of the prompt table."""
    config = present_sources(config)  # a missing file fails the run before anything is read or written
    check_paths(config, "curate")
    out = Path(config.out)
    write_resolved(config, "curate", out)
    timings: dict[str, float] = {}
    start = time.perf_counter()

    rules = PromptRules(config.rules)
    with bad_rows_file(out / BAD_ROWS_NAME) as bad:
        candidates, stats = read_candidates(config, rules, bad)
    check_sources(config, stats, bad)  # after the block: bad_rows.tsv is written either way
    timings["read_and_rules"] = time.perf_counter() - start

    start = time.perf_counter()
    vectors = embed(candidates.texts, config.embedding, out, config.progress)
    timings["embed"] = time.perf_counter() - start

    start = time.perf_counter()
    result = near_duplicates(vectors, config.dedup, progress=config.progress)
    timings["dedup"] = time.perf_counter() - start

    start = time.perf_counter()
    frame, moved = build_table(candidates, result, config)
    for i, row in enumerate(candidates.source):
        if not result.keep[i]:
            stats[row]["near_duplicates"] += 1
    names = [s.name for s in config.sources]
    for name, group in frame.groupby("source", sort=False):
        counts = stats[names.index(name)]
        counts["kept"] = len(group)
        counts.update(group["tier"].value_counts().to_dict())
        counts.update(group["split"].value_counts().to_dict())
        counts["moved_to_train"] = int(moved[group.index].sum())
    with all_or_none():  # the table, its stats and its report appear together, or none does
        table = write_table(frame, vectors, out / TABLE_NAME, rows=np.flatnonzero(result.keep))
        timings["write"] = time.perf_counter() - start
        _write_outputs(config, candidates, result, frame, moved, stats, rules, bad, timings)
    del vectors
    (out / VECTORS_NAME).unlink()
    return table


def present_sources(config: CurateConfig) -> CurateConfig:
    """The config without its optional sources whose files are missing (each one a warning); a missing file of
    any other source is an error naming it."""
    kept = []
    for source in config.sources:
        try:
            if source.path is not None:
                expand_paths(source.path)
            kept.append(source)
        except Img2PromptError as exc:
            if not source.optional:
                raise
            print(f"warning: optional source {source.name!r} left out: {exc}", file=sys.stderr, flush=True)
    if not kept:
        raise fail(config.out, "no source has any file to read")
    return config.model_copy(update={"sources": kept})


def read_candidates(config: CurateConfig, rules: PromptRules, bad: BadRows) -> tuple[Candidates, list[Counter]]:
    """Read every source (hq first) through the rules and exact dedup; counts per source, in config order."""
    order = sorted(range(len(config.sources)), key=lambda i: (config.sources[i].tier != "hq", i))
    stats = [Counter() for _ in config.sources]
    candidates = Candidates()
    for i in order:
        _read_one(config.sources[i], i, rules, bad, candidates, stats[i], config.progress)
    return candidates, stats


def check_sources(config: CurateConfig, stats: list[Counter], bad: BadRows) -> None:
    """Stop on a source without a single usable prompt (empty, or every row malformed or dropped by the rules),
    and on one that yielded mostly bad rows or has a damaged file unless it allows partial reads: a cut COCO JSON
    must not pass with exit 0 having kept one prompt."""
    for index, (source, counts) in enumerate(zip(config.sources, stats, strict=True)):
        if not counts["candidates"] + counts["exact_duplicates"]:  # none passed the rules
            raise fail(source.path if isinstance(source.path, str) else source.name, _nothing_usable(source, counts))
        if source.allow_partial or source.path is None:
            continue
        hint = f"fix the file, or set curate.sources.{index}.allow_partial: true to keep what was read"
        files = {str(p) for p in expand_paths(source.path)}
        damaged = next((f for f in sorted(files) if f in bad.damaged), None)
        if damaged is not None:
            raise fail(damaged, f"damaged ({bad.damaged[damaged]}); the rest of the file is unread: {hint}")
        rows = counts["read"] + counts["bad_rows"]
        if rows and counts["bad_rows"] / rows > config.max_bad_share:
            raise fail(source.path if isinstance(source.path, str) else source.name,
                       f"{counts['bad_rows']} of {rows} rows of source {source.name!r} are malformed (more than "
                       f"curate.max_bad_share {config.max_bad_share:g}; see {BAD_ROWS_NAME}): {hint}")


def _nothing_usable(source: SourceConfig, counts: Counter) -> str:
    rows = counts["read"] + counts["bad_rows"]
    if not rows:
        return f"source {source.name!r} is empty: not one prompt was read"
    dropped = {rule: counts[rule] for rule in FILTERS if counts[rule]}
    rules = ", ".join(f"{rule} {n}" for rule, n in sorted(dropped.items(), key=lambda item: -item[1]))
    return (f"none of the {rows} rows of source {source.name!r} is a usable prompt ({counts['bad_rows']} malformed, "
            f"see {BAD_ROWS_NAME}; dropped by the rules: {rules or 'none'})")


def _read_one(
    source: SourceConfig, index: int, rules: PromptRules, bad: BadRows, candidates: Candidates,
    counts: Counter, progress: bool,
) -> None:
    """Stream one source through the rules and exact dedup, counting what each step removed."""
    rules_before = rules.counts.copy()
    bad_before = bad.total
    stream = read_source(source.type, source.path, source.options(), bad)
    for n, raw in enumerate(tqdm(stream, desc=f"read {source.name}", unit="prompt", disable=not progress)):
        if (source.limit is not None and n >= source.limit) or (
                source.max_kept is not None and counts["candidates"] >= source.max_kept):
            break
        counts["read"] += 1
        text = rules.apply(raw)
        if text is None:
            continue
        if candidates.add(text, prompt_id(text), index, rules.tier(text, source.tier)):
            counts["candidates"] += 1
        else:
            counts["exact_duplicates"] += 1
    counts["bad_rows"] = bad.total - bad_before
    counts.update({k: rules.counts[k] - rules_before[k] for k in rules.counts})


def embed(texts: list[str], config: EmbeddingConfig, out: Path, progress: bool) -> np.ndarray:
    """Target embeddings of ``texts`` in a memmap at ``<out>/candidate_embeddings.npy``, chunk by chunk
    through the on-disk cache (the unit of resume)."""
    from img2prompt.embedding import TextEmbedder

    path = make_folder(out) / VECTORS_NAME
    try:
        vectors = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(len(texts), EMBEDDING_DIM))
        with path.open("r+b") as handle:  # claim the disk now: a memmap written past a full disk dies of SIGBUS
            os.posix_fallocate(handle.fileno(), 0, path.stat().st_size)
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise cannot_write(path, exc) from None
    if not texts:
        return vectors
    embedder = TextEmbedder(backend=config.backend, max_tokens=config.max_tokens, device=config.device,
                            cache_dir=config.cache_dir or out / "cache")
    with tqdm(total=len(texts), desc="embed", unit="prompt", disable=not progress) as bar:
        for start in range(0, len(texts), config.chunk):
            chunk = texts[start : start + config.chunk]
            vectors[start : start + len(chunk)] = embedder.encode(chunk)
            bar.update(len(chunk))
    if embedder.cache is not None:
        embedder.cache.close()
    return vectors


def split_of(cluster_key: str, splits: SplitConfig) -> str:
    """A cluster's split from a hash of its first prompt's id: stable when other prompts come and go."""
    u = int(cluster_key[:8], 16) / 16**8
    if u < splits.val:
        return "val"
    return "test" if u < splits.val + splits.test else "train"


def assign_splits(
    cluster_keys: list[str], component: np.ndarray, splits: SplitConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's split from its cluster's key; then val/test rows whose component holds a train row -> train.

    Leader clusters are bounded, so one component (rows joined by a chain of pairs above the cluster
    threshold) can span clusters drawn into different splits. Moving the val/test rows of every component
    that reaches train leaves no val/test row with a train row above the threshold, as far as the search
    found the pairs (all of them with the flat index). Returns the splits and which rows were moved.
    """
    split = np.array([split_of(key, splits) for key in cluster_keys], dtype=object)
    train = split == "train"
    reaches_train = np.zeros(int(component.max()) + 1 if len(component) else 0, bool)
    reaches_train[component[train]] = True
    moved = ~train & reaches_train[component]
    split[moved] = "train"
    return split, moved


def build_table(candidates: Candidates, result: DedupResult, config: CurateConfig) -> tuple[pd.DataFrame, np.ndarray]:
    """The scalar columns of the prompt table (kept candidates in priority order), and the rows whose split
    the leakage purge moved to train."""
    kept = np.flatnonzero(result.keep)
    table_row = np.cumsum(result.keep) - 1  # candidate row -> table row
    names = [s.name for s in config.sources]
    leader = result.cluster[kept]
    split, moved = assign_splits([candidates.ids[i] for i in leader], result.component[kept], config.splits)
    frame = pd.DataFrame(
        {
            "prompt_id": [candidates.ids[i] for i in kept],
            "prompt": [candidates.texts[i] for i in kept],
            "source": [names[candidates.source[i]] for i in kept],
            "tier": [candidates.tier[i] for i in kept],
            "cluster": table_row[leader].astype(np.int64),
            "split": split,
        }
    )
    return frame, moved


def _write_outputs(
    config: CurateConfig, candidates: Candidates, result: DedupResult, frame: pd.DataFrame, moved: np.ndarray,
    stats: list[Counter], rules: PromptRules, bad: BadRows, timings: dict[str, float],
) -> None:
    out = Path(config.out)
    sources = [
        {"name": s.name, "type": s.type, "tier": s.tier, **stats[i]} for i, s in enumerate(config.sources)
    ]
    cluster_sizes = frame["cluster"].value_counts()
    totals = {
        "read": sum(s["read"] for s in stats),
        "bad_rows": bad.total,
        "after_rules_and_exact_dedup": len(candidates.texts),
        "kept": len(frame),
        "clusters": len(cluster_sizes),
        "largest_cluster": int(cluster_sizes.max()) if len(frame) else 0,
        "cluster_size_p99": float(np.percentile(cluster_sizes, 99)) if len(frame) else 0.0,
        "largest_component": int(np.unique(result.component[result.keep], return_counts=True)[1].max())
        if len(frame) else 0,
        "moved_to_train": int(moved.sum()),
        **{split: int((frame["split"] == split).sum()) for split in ("train", "val", "test")},
        "index": result.index_kind,
        "pairs_above_cluster_threshold": result.pairs,
    }
    seconds = sum(timings.values())
    totals["prompts_per_s"] = round(totals["read"] / seconds, 1) if seconds else 0.0
    payload = {"totals": totals, "timings_s": timings, "sources": sources, "rules": dict(rules.counts),
               "bad_rows_per_file": dict(bad.per_file)}
    write_text_atomic(out / "stats.json", json.dumps(payload, indent=2))
    write_report(
        ReportData(
            sources=sources, rule_columns=list(FILTERS), rule_examples=rules.examples, totals=totals,
            timings=timings, word_counts=np.array([len(words(t)) for t in frame["prompt"]]),
            nearest=result.nearest[result.nearest > -1], threshold=config.dedup.threshold,
            cluster_threshold=config.dedup.cluster_threshold,
            duplicates=duplicate_examples(candidates, result, config), bad_rows=bad.examples,
        ),
        out,
    )


def duplicate_examples(
    candidates: Candidates, result: DedupResult, config: CurateConfig
) -> list[DuplicateExample]:
    """Removed near duplicates spread evenly over their cosine range, from the threshold up to 1."""
    removed = np.flatnonzero(~result.keep)
    if not len(removed) or config.report_examples <= 0:
        return []
    removed = removed[np.argsort(result.cosine[removed], kind="stable")]
    picks = removed[np.unique(np.linspace(0, len(removed) - 1, config.report_examples).astype(int))]
    names = [s.name for s in config.sources]
    examples = []
    for i in picks:
        j = result.duplicate_of[i]
        examples.append(DuplicateExample(
            removed=candidates.texts[i], removed_source=names[candidates.source[i]],
            kept=candidates.texts[j], kept_source=names[candidates.source[j]], cosine=float(result.cosine[i]),
        ))
    return examples
