"""The evaluation report: a score histogram (PNG) and one self-contained HTML page.

The page holds the summary tables and, per model, a grid of the worst-scored images (thumbnails inlined as
JPEG data URIs, so the file can be mailed or attached to a CI run) with the true prompt, the decoded
predicted prompt and the cosine.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pandas as pd

from img2prompt.files import atomic_path
from img2prompt.reports import render

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


def thumbnails(ids: set[str], sources: list[Path]) -> dict[str, str]:
    """JPEG data URIs of the images ``ids`` names, found in image files/folders (by stem) or shards (by key);
    an unreadable image has none."""
    from img2prompt.images import list_images, load_image
    from img2prompt.shards import find_shards, is_shards, iter_records, record_image

    found: dict[str, str] = {}
    for source in sources:
        if is_shards(source):
            wanted = ((raw["__key__"], lambda raw=raw: record_image(raw)) for raw in iter_records(find_shards(source)))
        else:
            wanted = ((path.stem, lambda path=path: load_image(path)) for path in list_images([source]))
        for image_id, load in wanted:
            if image_id in ids and image_id not in found:
                found[image_id] = _data_uri(load)
    return {image_id: uri for image_id, uri in found.items() if uri}


def _data_uri(load) -> str:
    """The thumbnail of ``load()`` as a data URI; "" when the image cannot be read."""
    from img2prompt.errors import Img2PromptError

    try:
        image = load()
    except Img2PromptError:
        return ""
    image.thumbnail((THUMBNAIL, THUMBNAIL))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def write_html_report(
    scores: pd.DataFrame,
    summary: dict[str, dict],
    path: Path,
    *,
    thumbnails: dict[str, str],
    decoded: dict[int, tuple[str, float]],
    grid: int,
    histogram: str,
) -> Path:
    """Summary tables per model and a grid of its ``grid`` worst images."""
    models = []
    for model, stats in summary.items():
        cards = []
        for index, row in scores[scores.model == model].nsmallest(grid, "cosine").iterrows():
            text, cosine = decoded.get(int(index), ("", float("nan")))
            cards.append({"image_id": row.image_id, "cosine": row.cosine, "prompt": row.prompt,
                          "thumbnail": thumbnails.get(row.image_id, ""),
                          "decoded": text, "decoded_cosine": cosine})
        models.append({"name": model, **stats, "cards": cards})
    return render("evaluation.html", path, histogram=histogram, models=models)
