"""The evaluation report: one self-contained HTML page (every plot and thumbnail inlined as a data URI, so the
file can be mailed or attached to a CI run), with the plots also written beside it as PNGs.

A contents bar stays at the top of the page. The page leads with the leaderboard (mean cosine, gain over the
constant baseline, per source and per prompt length): the models ranked, then the baselines in a group of their
own (``evaluate.baseline_kind``: references learnt from no image). Then the score distributions (one box per model
and one histogram per model, so many models stay readable), then per model and then per baseline its best and
worst images with the true prompt and the decoded predicted prompt.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from img2prompt.evaluate import BASELINE, BASELINE_KINDS, CSV_SOURCE
from img2prompt.models.specs import parse
from img2prompt.provenance import SCORE_WARNING, synthetic
from img2prompt.reports import data_uri, inline_figure, render

THUMBNAIL = 192
BOXPLOT_PNG = "boxplot.png"
HISTOGRAM_PNG = "histogram.png"
BASELINE_COLOUR = "#8a8f98"
BASELINE_COLOURS = ("#a0785a", "#6f8fa8", "#9a8fb0")  # muted: references, not competitors


def short_name(model: str) -> str:
    """What a heading calls a model: its spec without folders (``mean:prompts.parquet``, a checkpoint's folder name,
    ``clip:ViT-B-32/openai?bank=prompts.parquet``)."""
    return parse(model).display_name()


def colours(models: list[str], baselines: list[str]) -> dict[str, str]:
    """One colour per model, the same in every plot and the leaderboard: bright for the models, muted for the
    baselines, grey for the constant baseline."""
    import matplotlib

    palette = matplotlib.colormaps["tab10"].colors
    chosen = {m: matplotlib.colors.to_hex(palette[i % len(palette)]) for i, m in enumerate(models)}
    others = [m for m in baselines if m != BASELINE]
    chosen |= {m: BASELINE_COLOURS[i % len(BASELINE_COLOURS)] for i, m in enumerate(others)}
    return {**chosen, BASELINE: BASELINE_COLOUR}


def boxplot(scores: pd.DataFrame, order: list[str], colour: dict[str, str], path: Path, *, models: int) -> str:
    """One horizontal box per model (in ``order``: its first ``models`` are the models, then a dashed line and the
    baselines) with every image as a dot and the mean as a diamond."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7.2, 0.9 + 0.5 * len(order)))
    rng = np.random.default_rng(0)
    for y, model in enumerate(reversed(order)):
        values = scores.cosine[scores.model == model].to_numpy()
        parts = axes.boxplot(values, positions=[y], vert=False, widths=0.6, showfliers=False, patch_artist=True)
        parts["boxes"][0].set(facecolor=colour[model] + "40", edgecolor=colour[model])
        for line in parts["medians"]:
            line.set(color=colour[model])
        axes.scatter(values, y + rng.uniform(-0.2, 0.2, len(values)), s=6, color=colour[model], alpha=0.5, lw=0)
        axes.scatter([values.mean()], [y], marker="D", s=36, color="black", zorder=3)
        axes.annotate(f"{values.mean():.3f}", (1.0, y), xycoords=("axes fraction", "data"), xytext=(6, 0),
                      textcoords="offset points", va="center", fontsize=9)
    axes.set_yticks(range(len(order)), [short_name(m) for m in reversed(order)], fontsize=9)
    if 0 < models < len(order):
        axes.axhline(len(order) - models - 0.5, color=BASELINE_COLOUR, lw=1, ls="--")
        for label in axes.get_yticklabels()[:len(order) - models]:
            label.set(style="italic", color="#5b6472")
    axes.set_xlabel("cosine to the true prompt (◆ mean, box: quartiles)")
    axes.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    return inline_figure(figure, path)


def histograms(scores: pd.DataFrame, order: list[str], colour: dict[str, str], path: Path, *,
               baselines: list[str]) -> str:
    """One small histogram per model on shared axes (integer counts), the constant baseline's mean dotted on each;
    a baseline's title says it is one."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    columns = min(3, len(order))
    rows = math.ceil(len(order) / columns)
    figure, grid = plt.subplots(rows, columns, figsize=(3.6 * columns, 0.5 + 1.9 * rows), sharex=True, sharey=True,
                                squeeze=False)
    low = math.floor(float(scores.cosine.min()) * 10) / 10
    edges = np.linspace(low, 1.0, 31)
    baseline_mean = scores.cosine[scores.model == BASELINE].mean()
    for axes, model in zip(grid.flat, order, strict=False):
        values = scores.cosine[scores.model == model]
        axes.hist(values, bins=edges, color=colour[model])
        axes.axvline(values.mean(), color="black", lw=1)
        axes.axvline(baseline_mean, color=BASELINE_COLOUR, lw=1, ls=":")
        kind = " (baseline)" if model in baselines and model != BASELINE else ""  # the constant one says so itself
        axes.set_title(f"{short_name(model)}{kind}: mean {values.mean():.3f}", fontsize=9)
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    for axes in grid.flat[len(order):]:
        axes.set_visible(False)
    for axes in grid[-1]:
        axes.set_xlabel("cosine to the true prompt", fontsize=9)
    for axes in grid[:, 0]:
        axes.set_ylabel("images", fontsize=9)
    figure.tight_layout()
    return inline_figure(figure, path)


def thumbnails(ids: set[str], sources: list[Path]) -> dict[str, str]:
    """JPEG data URIs of the images ``ids`` names, found in image files/folders (by stem) or shards (by key);
    an unreadable image has none. The search stops once every image is found."""
    from img2prompt.images import list_images, load_image
    from img2prompt.shards import find_shards, is_shards, iter_records, record_image

    found: dict[str, str] = {}
    with tqdm(total=len(ids), desc="evaluate: thumbnails", unit="image", disable=None) as bar:
        for source in sources:
            if is_shards(source):
                wanted = ((raw["__key__"], lambda raw=raw: record_image(raw))
                          for raw in iter_records(find_shards(source)))
            else:
                wanted = ((path.stem, lambda path=path: load_image(path)) for path in list_images([source]))
            for image_id, load in wanted:
                if image_id in ids and image_id not in found:
                    found[image_id] = _thumbnail_uri(load)
                    bar.update()
                    if len(found) == len(ids):
                        break
    return {image_id: uri for image_id, uri in found.items() if uri}


def _thumbnail_uri(load) -> str:
    """The thumbnail of ``load()`` as a data URI; "" when the image cannot be read."""
    from img2prompt.errors import Img2PromptError

    try:
        image = load()
    except Img2PromptError:
        return ""
    image.thumbnail((THUMBNAIL, THUMBNAIL))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return data_uri(buffer.getvalue(), "image/jpeg")


def shade(value: float, low: float, high: float) -> str:
    """A cell's background: white for the column's lowest value to green for its highest."""
    share = 0.0 if high <= low else (value - low) / (high - low)
    return f"hsl(140, 55%, {97 - 25 * share:.0f}%)"


def leaderboard(scores: pd.DataFrame, summary: dict[str, dict], colour: dict[str, str], shown: set[str]) -> dict:
    """The leaderboard's columns (sources, length buckets with their image counts) and its rows in two groups: the
    models (ranked, best first) and the baselines (best first, each with what it predicts). A row in ``shown`` has
    a section of its own, which its ``anchor`` names."""
    images = scores[scores.model == BASELINE]
    sources = [{"name": name, "images": int(n)} for name, n in images.source.value_counts().sort_index().items()]
    lengths = [{"name": name, "images": int((images.length == name).sum())}
               for name in summary[BASELINE]["by_length"]]
    columns = [("mean_cosine", None)] + [("by_source", s["name"]) for s in sources] + \
              [("by_length", b["name"]) for b in lengths]
    values = {column: [_value(stats, *column) for stats in summary.values()] for column in columns}
    ranges = {column: (np.nanmin(v), np.nanmax(v)) for column, v in values.items()}
    groups: dict[str, list[dict]] = {"models": [], "baselines": []}
    for model, stats in summary.items():
        kind = stats["baseline"]
        rows = groups["baselines" if kind else "models"]
        cells = [{"value": v, "shade": shade(v, *ranges[column]) if not math.isnan(v) else ""}
                 for column in columns for v in [_value(stats, *column)]]
        sections = sum(row["anchor"] is not None for row in rows)
        anchor = f"{'baseline' if kind else 'model'}-{sections + 1}" if model in shown else None
        rows.append({"name": model, "label": short_name(model), "rank": None if kind else len(rows) + 1,
                     "baseline": kind, "note": BASELINE_KINDS.get(kind, ""), "colour": colour[model],
                     "images": stats["images"], "gain": stats["gain_over_baseline"], "mean": cells[0],
                     "cells": cells[1:], "anchor": anchor})
    return {"sources": sources, "lengths": lengths, **groups}


def _value(stats: dict, key: str, name: str | None) -> float:
    return stats[key] if name is None else stats[key].get(name, float("nan"))


def write_html_report(
    scores: pd.DataFrame,
    summary: dict[str, dict],
    out: Path,
    *,
    shown: dict[str, dict[str, list[int]]],
    truth: str,
    decoded: dict[int, tuple[str, float]],
    thumbnails: dict[str, str],
) -> Path:
    """``out/report.html``: the contents bar, the leaderboard, the distributions, and each model's and then each
    baseline's best and worst images. ``summary`` holds the models and the baselines (``summarise``'s ``baseline``
    kind tells them apart), best first."""
    models = [m for m, stats in summary.items() if not stats["baseline"]]
    baselines = [m for m, stats in summary.items() if stats["baseline"]]
    colour = colours(models, baselines)
    board = leaderboard(scores, summary, colour, set(shown))
    sections = {group: [{**row, **{side: [_card(scores, i, decoded, thumbnails) for i in rows]
                                   for side, rows in shown[row["name"]].items()}}
                        for row in board[group] if row["anchor"]]
                for group in ("models", "baselines")}
    order = models + baselines
    plots = {"boxplot": boxplot(scores, order, colour, out / BOXPLOT_PNG, models=len(models)),
             "histograms": histograms(scores, order, colour, out / HISTOGRAM_PNG, baselines=baselines)}
    images = int((scores.model == BASELINE).sum())
    warning = SCORE_WARNING if synthetic(s["name"] for s in board["sources"]) else None
    return render("evaluation.html", out / "report.html", board=board, sections=sections, plots=plots, truth=truth,
                  images=images, sourced=all(s["name"] != CSV_SOURCE for s in board["sources"]), warning=warning)


def _card(scores: pd.DataFrame, index: int, decoded: dict[int, tuple[str, float]],
          thumbnails: dict[str, str]) -> dict:
    row = scores.loc[index]
    text, cosine = decoded.get(index, ("", float("nan")))
    return {"image_id": row.image_id, "cosine": row.cosine, "prompt": row.prompt, "source": row.source,
            "thumbnail": thumbnails.get(row.image_id, ""), "decoded": text, "decoded_cosine": cosine}
