"""The evaluate stage: score predictions against the true prompts (``truth``) overall, per source and per
prompt length, and write the scores, the metrics and the HTML report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from img2prompt.files import write_text_atomic
from img2prompt.space import cosine_per_row
from img2prompt.truth import Truth, load_truth, match_truth

if TYPE_CHECKING:
    from img2prompt.decode import DecodeConfig

LENGTH_BUCKETS = ((1, 5), (6, 10), (11, 20), (21, 40), (41, 10_000))


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
    images: list[Path] | None = None,  # image files/folders (ids = stems) or shards (ids = sample keys)
    bank: Path | None = None,
    grid: int = 24,
    decode_config: DecodeConfig | None = None,
) -> dict[str, dict]:
    """Score every predictions file; write scores.csv, metrics.json, histogram.png and report.html."""
    from img2prompt.evaluate.report import thumbnails, write_histogram, write_html_report
    from img2prompt.predictions import read_predictions

    frames, vectors = [], []
    for path in prediction_files:
        frame, vecs = read_predictions(path)
        frames.append(frame)
        vectors.append(vecs)
    predictions = pd.concat(frames, ignore_index=True)
    predicted = np.concatenate(vectors)
    truth = load_truth(truth_path, keys=set(predictions.image_id))
    scores = score_table(list(predictions.image_id), list(predictions.model), predicted, truth, truth_path)
    summary = summarise(scores)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "scores.csv", scores.to_csv(index=False))
    write_text_atomic(out / "metrics.json", json.dumps(summary, indent=2))
    write_histogram(scores, out / "histogram.png")
    decoded = _decode_predictions(scores, predicted, bank, grid, decode_config) if bank else {}
    shown = {scores.image_id[i] for _, group in scores.groupby("model", sort=False)
             for i in group.nsmallest(grid, "cosine").index}
    write_html_report(scores, summary, out / "report.html", thumbnails=thumbnails(shown, images or []),
                      decoded=decoded, grid=grid, histogram="histogram.png")
    return summary


def _decode_predictions(scores: pd.DataFrame, predicted: np.ndarray, bank: Path, grid: int,
                        config: DecodeConfig | None) -> dict[int, tuple[str, float]]:
    """Decoded prompt of the predictions shown in the report (the ``grid`` worst of each model)."""
    from img2prompt.decode import PromptDecoder

    decoder = PromptDecoder.from_table(bank, config=config)
    shown = [i for _, group in scores.groupby("model", sort=False) for i in group.nsmallest(grid, "cosine").index]
    results = {int(i): decoder.decode(predicted[i]) for i in shown}
    return {i: (r.text, r.cosine) for i, r in results.items()}


