"""The curation report: one self-contained HTML page a person reads to trust (or fix) a curation run.

It shows the run's totals as a table, counts per source (in two tables that fit a page: read, kept and split; removed),
a prompt-length histogram and a nearest-neighbour cosine histogram (inlined; also written beside the page as
PNGs), removed near duplicates next to the prompt that kept them out, examples dropped by each rule, and the
first malformed rows with their file and line (all of them are in ``bad_rows.tsv`` beside it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a display
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from img2prompt.reports import inline_figure, render

LENGTH_PNG = "length_histogram.png"
NEAREST_PNG = "nearest_neighbour_histogram.png"

# What each count is called on the page; a key missing here is shown with its underscores as spaces.
LABELS = {
    "read": "prompts read", "bad_rows": "malformed rows",
    "after_rules_and_exact_dedup": "left after the rules and exact dedup", "kept": "kept",
    "train": "train", "val": "val", "test": "test", "moved_to_train": "val/test moved to train",
    "clusters": "clusters", "largest_cluster": "largest cluster (prompts)",
    "cluster_size_p99": "cluster size, 99th percentile", "largest_component": "largest chain above the cluster "
    "threshold", "pairs_above_cluster_threshold": "pairs above the cluster threshold",
    "index": "near-duplicate index", "prompts_per_s": "prompts per second",
    "read_and_rules": "read and rules (s)", "embed": "embed (s)", "dedup": "deduplicate (s)", "write": "write (s)",
    "encoding_fixed": "encoding fixed", "weights_normalised": "weights removed", "unreadable": "unreadable",
    "url_or_email": "URL or e-mail", "non_english": "not English", "too_short": "too short",
    "too_long": "too long", "too_many_tokens": "too many tokens", "only_modifiers": "only modifiers",
    "blocked_word": "blocked word", "exact_duplicates": "exact duplicate", "near_duplicates": "near duplicate",
    "hq": "HQ", "lq": "LQ",
}
SUMMARY_GROUPS = {
    "Prompts": ["read", "bad_rows", "after_rules_and_exact_dedup", "kept"],
    "Splits": ["train", "val", "test", "moved_to_train"],
    "Clusters": ["clusters", "largest_cluster", "cluster_size_p99", "largest_component",
                 "pairs_above_cluster_threshold"],
    "Index and time": ["index", "prompts_per_s"],
}


@dataclass
class DuplicateExample:
    removed: str
    removed_source: str
    kept: str
    kept_source: str
    cosine: float


@dataclass
class ReportData:
    sources: list[dict]  # one row per source: name, type, tier and its counts
    rule_columns: list[str]
    rule_examples: dict[str, list[str]]
    totals: dict[str, int | float | str]
    timings: dict[str, float]
    word_counts: np.ndarray  # words per kept prompt
    nearest: np.ndarray  # nearest-neighbour cosine of each prompt after rules and exact dedup
    threshold: float
    cluster_threshold: float
    duplicates: list[DuplicateExample]
    bad_rows: list[str]


def label(key: str) -> str:
    return LABELS.get(key, key.replace("_", " "))


def number(value: int | float | str) -> str:
    """A whole number with thousands separators, a fraction with one decimal, text as it is."""
    if isinstance(value, str):
        return value
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,.1f}"


def summary_tables(totals: dict, timings: dict[str, float]) -> dict[str, list[tuple[str, str]]]:
    """The totals as (label, value) rows in a few small tables; a total no group names, and the timings, join
    the last."""
    named = {key for keys in SUMMARY_GROUPS.values() for key in keys}
    groups = {title: [(label(k), number(totals[k])) for k in keys if k in totals]
              for title, keys in SUMMARY_GROUPS.items()}
    last = groups[list(SUMMARY_GROUPS)[-1]]
    last += [(label(k), number(v)) for k, v in totals.items() if k not in named]
    last += [(label(k), f"{v:.1f}") for k, v in timings.items()]
    last.append(("total (s)", f"{sum(timings.values()):.1f}"))
    return groups


def source_tables(rule_columns: list[str]) -> dict[str, list[str]]:
    """The per-source counts split into tables narrow enough for a page: their columns by title."""
    return {
        "Read, kept and split": ["read", "bad_rows", "kept", "hq", "lq", "encoding_fixed", "weights_normalised",
                                 "train", "val", "test", "moved_to_train"],
        "Removed by a rule or as a duplicate": [*rule_columns, "exact_duplicates", "near_duplicates"],
    }


def write_report(data: ReportData, out_dir: Path) -> Path:
    """Write ``report.html`` (and its two histograms as PNGs) into ``out_dir``; returns the page's path."""
    length = _histogram(data.word_counts, out_dir / LENGTH_PNG, "words per kept prompt",
                        bins=np.arange(int(data.word_counts.max(initial=0)) + 2) - 0.5)
    nearest = _histogram(data.nearest, out_dir / NEAREST_PNG, "cosine to the nearest other prompt", bins=50,
                         lines={f"near duplicate above {data.threshold}": data.threshold,
                                f"cluster threshold {data.cluster_threshold}": data.cluster_threshold})
    tables = source_tables(data.rule_columns)
    totals_row = {c: sum(int(s.get(c, 0)) for s in data.sources) for columns in tables.values() for c in columns}
    rules = [{"name": label(rule), "dropped": totals_row.get(rule, 0), "examples": data.rule_examples.get(rule, [])}
             for rule in data.rule_columns]
    return render(
        "curation.html", out_dir / "report.html", summary=summary_tables(data.totals, data.timings),
        tables=tables, sources=data.sources, totals_row=totals_row, label=label, totals=data.totals,
        plots={"length": length, "nearest": nearest}, threshold=data.threshold,
        cluster_threshold=data.cluster_threshold, duplicates=data.duplicates, rules=rules, bad_rows=data.bad_rows,
    )


def _histogram(values: np.ndarray, path: Path, xlabel: str, bins: int | np.ndarray,
               lines: dict[str, float] | None = None) -> str:
    """A histogram with integer counts; threshold lines are named in a legend, so their labels never overlap."""
    figure, axes = plt.subplots(figsize=(5.8, 3.3))
    if len(values):
        axes.hist(values, bins=bins, color="#4477aa")
    for (name, x), style in zip((lines or {}).items(), ("--", ":"), strict=False):
        axes.axvline(x, color="#cc3311", linestyle=style, linewidth=1.5, label=name)
    if lines:
        axes.legend(fontsize=8, loc="best")
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel(xlabel)
    axes.set_ylabel("prompts")
    figure.tight_layout()
    return inline_figure(figure, path)
