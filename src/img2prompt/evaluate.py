"""Scoring predictions against the true prompts: overall, per source, per prompt length; plus a report.

Ground truth is a Kaggle ``imgId,prompt`` CSV (embedded here with the exact target embedder) or a prompt
table. Image ids match a truth key exactly, or as ``<prompt_id>-<k>``, the sample keys that generation
writes (so predictions on generated shards images score against the prompt table directly).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from img2prompt.errors import fail
from img2prompt.files import write_text_atomic
from img2prompt.kaggle import cosine_per_row

if TYPE_CHECKING:
    from img2prompt.decode import DecodeConfig

LENGTH_BUCKETS = ((1, 5), (6, 10), (11, 20), (21, 40), (41, 10_000))


@dataclass
class Truth:
    keys: list[str]
    prompts: list[str]
    sources: list[str]
    embeddings: np.ndarray


def load_truth(path: str | Path) -> Truth:
    """True prompts and their embeddings from a prompts CSV or a prompt table (by suffix)."""
    path = Path(path)
    if path.suffix == ".csv":
        from img2prompt.embedding import TextEmbedder
        from img2prompt.kaggle import read_prompts_csv

        frame = read_prompts_csv(path)
        vectors = TextEmbedder().encode(list(frame.prompt))
        return Truth(list(frame.imgId), list(frame.prompt), [path.stem] * len(frame), vectors)
    from img2prompt.prompt_table import read_table

    frame, vectors = read_table(path, columns=["prompt_id", "prompt", "source", "embedding"])
    return Truth(list(frame.prompt_id), list(frame.prompt), list(frame.source), vectors)


def match_truth(image_ids: list[str], truth: Truth, source: str | Path) -> np.ndarray:
    """Row of ``truth`` for each image id (exact key, else ``<key>-<k>``); an unknown id is an error."""
    index = {key: row for row, key in enumerate(truth.keys)}
    rows = []
    for image_id in image_ids:
        row = index.get(image_id, index.get(image_id.rsplit("-", 1)[0]))
        if row is None:
            raise fail(source, f"no true prompt for image {image_id!r}")
        rows.append(row)
    return np.asarray(rows, dtype=np.int64)


def length_bucket(prompt: str) -> str:
    words = len(prompt.split())
    for low, high in LENGTH_BUCKETS:
        if low <= words <= high:
            return f"{low}-{high}" if high < 10_000 else f"{low}+"
    return "0"


def score_table(image_ids: list[str], models: list[str], predicted: np.ndarray, truth: Truth,
                truth_path: str | Path) -> pd.DataFrame:
    """One row per prediction: image_id, model, cosine, true prompt, its source and length bucket."""
    rows = match_truth(image_ids, truth, truth_path)
    prompts = [truth.prompts[r] for r in rows]
    return pd.DataFrame({
        "image_id": image_ids,
        "model": models,
        "cosine": cosine_per_row(predicted, truth.embeddings[rows]),
        "prompt": prompts,
        "source": [truth.sources[r] for r in rows],
        "length": [length_bucket(p) for p in prompts],
    })


def summarise(scores: pd.DataFrame) -> dict[str, dict]:
    """Per model: n, mean cosine, and mean cosine per source and per prompt-length bucket."""
    summary = {}
    for model, group in scores.groupby("model", sort=False):
        summary[str(model)] = {
            "images": len(group),
            "mean_cosine": float(group.cosine.mean()),
            "by_source": {str(k): float(v) for k, v in group.groupby("source").cosine.mean().items()},
            "by_length": {str(k): float(v) for k, v in group.groupby("length").cosine.mean().items()},
        }
    return summary


def run_evaluate(
    prediction_files: list[Path],
    truth_path: Path,
    out: Path,
    *,
    images: list[Path] | None = None,
    bank: Path | None = None,
    grid: int = 24,
    decode_config: DecodeConfig | None = None,
) -> dict[str, dict]:
    """Score every predictions file; write scores.csv, metrics.json, histogram.png and report.html."""
    from img2prompt.predict import read_predictions
    from img2prompt.report import write_histogram, write_html_report

    truth = load_truth(truth_path)
    frames, vectors = [], []
    for path in prediction_files:
        frame, vecs = read_predictions(path)
        frames.append(frame)
        vectors.append(vecs)
    predictions = pd.concat(frames, ignore_index=True)
    predicted = np.concatenate(vectors)
    scores = score_table(list(predictions.image_id), list(predictions.model), predicted, truth, truth_path)
    summary = summarise(scores)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "scores.csv", scores.to_csv(index=False))
    write_text_atomic(out / "metrics.json", json.dumps(summary, indent=2))
    write_histogram(scores, out / "histogram.png")
    decoded = _decode_predictions(scores, predicted, bank, grid, decode_config) if bank else {}
    write_html_report(scores, summary, out / "report.html", images=images or [], decoded=decoded, grid=grid,
                      histogram="histogram.png")
    return summary


def _decode_predictions(scores: pd.DataFrame, predicted: np.ndarray, bank: Path, grid: int,
                        config: DecodeConfig | None) -> dict[int, tuple[str, float]]:
    """Decoded prompt of the predictions shown in the report (the ``grid`` worst of each model)."""
    from img2prompt.decode import PromptDecoder

    decoder = PromptDecoder.from_table(bank, config=config)
    shown = [i for _, group in scores.groupby("model", sort=False) for i in group.nsmallest(grid, "cosine").index]
    results = {int(i): decoder.decode(predicted[i]) for i in shown}
    return {i: (r.text, r.cosine) for i, r in results.items()}


