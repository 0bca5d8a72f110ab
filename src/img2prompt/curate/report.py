"""The curation report: one HTML page a person reads to trust (or fix) a curation run.

It shows counts per source and per rule, a prompt-length histogram and a nearest-neighbour cosine histogram
(PNG, beside the page), removed near duplicates next to the prompt that kept them out, and the first
malformed rows with their file and line (all of them are in ``bad_rows.tsv`` beside it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a display
import matplotlib.pyplot as plt
import numpy as np

from img2prompt.files import atomic_path
from img2prompt.reports import render

LENGTH_PNG = "length_histogram.png"
NEAREST_PNG = "nearest_neighbour_histogram.png"


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




def write_report(data: ReportData, out_dir: Path) -> Path:
    """Write ``report.html`` and its two PNG histograms into ``out_dir``; returns the page's path."""
    _histogram(data.word_counts, out_dir / LENGTH_PNG, "words per kept prompt", "prompts", bins=40)
    _histogram(data.nearest, out_dir / NEAREST_PNG, "cosine to the nearest other prompt", "prompts",
               bins=50, lines={f"dedup {data.threshold}": data.threshold,
                               f"cluster {data.cluster_threshold}": data.cluster_threshold})
    columns = ["read", "bad_rows", *data.rule_columns, "exact_duplicates", "near_duplicates", "kept",
               "hq", "lq", "train", "val", "test", "moved_to_train"]
    return render(
        "curation.html", out_dir / "report.html", sources=data.sources, columns=columns, totals=data.totals,
        timings=data.timings, length_png=LENGTH_PNG, nearest_png=NEAREST_PNG, threshold=data.threshold,
        cluster_threshold=data.cluster_threshold,
        duplicates=data.duplicates, rule_examples=data.rule_examples, bad_rows=data.bad_rows,
    )


def _histogram(
    values: np.ndarray, path: Path, xlabel: str, ylabel: str, bins: int, lines: dict[str, float] | None = None
) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    if len(values):
        ax.hist(values, bins=bins, color="#4477aa")
    for label, x in (lines or {}).items():
        ax.axvline(x, color="#cc3311", linestyle="--", linewidth=1)
        ax.text(x, ax.get_ylim()[1] * 0.95, f" {label}", color="#cc3311", fontsize=8, va="top")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
