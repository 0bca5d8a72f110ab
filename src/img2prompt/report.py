"""The evaluation report: a score histogram (PNG) and one self-contained HTML page.

The page holds the summary tables and, per model, a grid of the worst-scored images (thumbnails inlined as
JPEG data URIs, so the file can be mailed or attached to a CI run) with the true prompt, the decoded
predicted prompt and the cosine.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import pandas as pd

from img2prompt.files import atomic_path, write_text_atomic

THUMBNAIL = 192


def write_histogram(scores: pd.DataFrame, path: Path) -> Path:
    """Histogram of per-image cosines, one series per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4), dpi=100)
    for model, group in scores.groupby("model", sort=False):
        axes.hist(group.cosine, bins=40, range=(-0.2, 1.0), alpha=0.6, label=f"{model} ({group.cosine.mean():.3f})")
    axes.set_xlabel("cosine to the true prompt embedding")
    axes.set_ylabel("images")
    axes.legend(fontsize=8)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    plt.close(figure)
    return path


def _thumbnail(path: Path) -> str:
    from img2prompt.errors import Img2PromptError
    from img2prompt.images import load_image

    try:
        image = load_image(path)
    except Img2PromptError:
        return ""
    image.thumbnail((THUMBNAIL, THUMBNAIL))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _table(title: str, values: dict[str, float]) -> str:
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.4f}</td></tr>" for k, v in values.items())
    return f"<table><tr><th>{html.escape(title)}</th><th>mean cosine</th></tr>{rows}</table>"


def write_html_report(
    scores: pd.DataFrame,
    summary: dict[str, dict],
    path: Path,
    *,
    images: list[Path],
    decoded: dict[int, tuple[str, float]],
    grid: int,
    histogram: str,
) -> Path:
    """Summary tables per model and a grid of its ``grid`` worst images."""
    by_stem = {p.stem: p for p in images}
    parts = ["<!doctype html><meta charset='utf-8'><title>img2prompt evaluation</title>",
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:4px 8px}.grid{display:flex;flex-wrap:wrap;gap:12px}"
             ".card{width:240px;border:1px solid #ddd;padding:8px;font-size:12px}"
             ".card img{max-width:100%}</style>",
             "<h1>img2prompt evaluation</h1>", f"<img src='{html.escape(histogram)}' alt='score histogram'>"]
    for model, stats in summary.items():
        parts.append(f"<h2>{html.escape(model)}: {stats['mean_cosine']:.4f} over {stats['images']} images</h2>")
        parts.append(_table("source", stats["by_source"]) + _table("prompt words", stats["by_length"]))
        worst = scores[scores.model == model].nsmallest(grid, "cosine")
        cards = []
        for index, row in worst.iterrows():
            thumb = _thumbnail(by_stem[row.image_id]) if row.image_id in by_stem else ""
            image = f"<img src='{thumb}' alt='{html.escape(row.image_id)}'>" if thumb else ""
            text, cosine = decoded.get(int(index), ("", float("nan")))
            guess = f"<p><b>decoded</b> ({cosine:.3f}): {html.escape(text)}</p>" if text else ""
            cards.append(f"<div class='card'>{image}<p><b>{html.escape(row.image_id)}</b> "
                         f"cosine {row.cosine:.4f}</p><p><b>true</b>: {html.escape(row.prompt)}</p>{guess}</div>")
        parts.append(f"<h3>worst {len(cards)} images</h3><div class='grid'>{''.join(cards)}</div>")
    return write_text_atomic(path, "\n".join(parts))
