"""The curation report: one HTML page a person reads to trust (or fix) a curation run.

It shows counts per source and per rule, a prompt-length histogram and a nearest-neighbour cosine histogram
(PNG, beside the page), removed near duplicates next to the prompt that kept them out, and the first
malformed rows with their file and line (all of them are in ``bad_rows.tsv`` beside it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jinja2
import matplotlib

matplotlib.use("Agg")  # files only, never a display
import matplotlib.pyplot as plt
import numpy as np

from img2prompt.files import atomic_path, write_text_atomic

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


_PAGE = jinja2.Template(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Prompt curation report</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
td.t,th.t{text-align:left}img{max-width:560px;margin-right:1em}code{font-size:90%}
</style></head><body>
<h1>Prompt curation report</h1>
<p>{% for k, v in totals.items() %}<b>{{ k }}</b>: {{ v }}{% if not loop.last %} &middot; {% endif %}{% endfor %}</p>
<p>Time (s): {% for k, v in timings.items() %}{{ k }} {{ "%.1f"|format(v) }}{% if not loop.last %},
{% endif %}{% endfor %}</p>
<p>Splits: clusters are led by their first prompt, every member within cosine {{ cluster_threshold }} of
it; <b>{{ totals.moved_to_train }}</b> val/test prompts were moved to train because a chain of prompts above
cosine {{ cluster_threshold }} joins them to a train prompt (train {{ totals.train }}, val {{ totals.val }},
test {{ totals.test }}).</p>
<h2>Per source</h2>
<table><tr><th class="t">source</th><th class="t">type</th><th class="t">tier</th>
{% for c in columns %}<th>{{ c }}</th>{% endfor %}</tr>
{% for s in sources %}<tr><td class="t">{{ s.name }}</td><td class="t">{{ s.type }}</td><td class="t">{{ s.tier }}</td>
{% for c in columns %}<td>{{ s.get(c, 0) }}</td>{% endfor %}</tr>{% endfor %}
</table>
<h2>Distributions</h2>
<img src="{{ length_png }}" alt="prompt length histogram"><img src="{{ nearest_png }}" alt="nearest-neighbour cosine">
<h2>Removed near duplicates (cosine &gt; {{ threshold }})</h2>
<table><tr><th>cosine</th><th class="t">removed</th><th class="t">kept</th></tr>
{% for d in duplicates %}<tr><td>{{ "%.3f"|format(d.cosine) }}</td>
<td class="t">{{ d.removed }} <i>({{ d.removed_source }})</i></td>
<td class="t">{{ d.kept }} <i>({{ d.kept_source }})</i></td></tr>
{% endfor %}</table>
<h2>Examples dropped by each rule</h2>
{% for rule, texts in rule_examples.items() if texts %}<h3>{{ rule }}</h3><ul>
{% for t in texts %}<li><code>{{ t }}</code></li>{% endfor %}</ul>{% endfor %}
<h2>Malformed rows (skipped; the first {{ bad_rows|length }} here, all of them in bad_rows.tsv)</h2>
<ul>{% for b in bad_rows %}<li><code>{{ b }}</code></li>{% else %}<li>none</li>{% endfor %}</ul>
</body></html>
""",
    autoescape=True,
)


def write_report(data: ReportData, out_dir: Path) -> Path:
    """Write ``report.html`` and its two PNG histograms into ``out_dir``; returns the page's path."""
    _histogram(data.word_counts, out_dir / LENGTH_PNG, "words per kept prompt", "prompts", bins=40)
    _histogram(data.nearest, out_dir / NEAREST_PNG, "cosine to the nearest other prompt", "prompts",
               bins=50, lines={f"dedup {data.threshold}": data.threshold,
                               f"cluster {data.cluster_threshold}": data.cluster_threshold})
    columns = ["read", "bad_rows", *data.rule_columns, "exact_duplicates", "near_duplicates", "kept",
               "hq", "lq", "train", "val", "test", "moved_to_train"]
    html = _PAGE.render(
        sources=data.sources, columns=columns, totals=data.totals, timings=data.timings,
        length_png=LENGTH_PNG, nearest_png=NEAREST_PNG, threshold=data.threshold,
        cluster_threshold=data.cluster_threshold,
        duplicates=data.duplicates, rule_examples=data.rule_examples, bad_rows=data.bad_rows,
    )
    return write_text_atomic(out_dir / "report.html", html)


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
