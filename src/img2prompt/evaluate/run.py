"""The evaluate stage: score predictions against the true prompts (``truth``) overall, per source and per
prompt length, beside the constant baseline, and write the scores, the metrics and the HTML report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from img2prompt.evaluate import BASELINE, CSV_SOURCE, baseline_kind
from img2prompt.files import all_or_none, check_output, write_text_atomic
from img2prompt.space import cosine_per_row, normalise
from img2prompt.truth import Truth, load_truth, match_truth

if TYPE_CHECKING:
    from img2prompt.decode import DecodeConfig

LENGTH_BUCKETS = ((1, 5), (6, 10), (11, 20), (21, 40), (41, 10_000))
LENGTH_LABELS = tuple(f"{low}-{high}" if high < 10_000 else f"{low}+" for low, high in LENGTH_BUCKETS)


def length_bucket(prompt: str) -> str:
    words = len(prompt.split())
    for (low, high), label in zip(LENGTH_BUCKETS, LENGTH_LABELS, strict=True):
        if low <= words <= high:
            return label
    return "0"


def score_table(image_ids: list[str], models: list[str], predicted: np.ndarray, truth: Truth,
                truth_path: str | Path) -> pd.DataFrame:
    """One row per prediction: image_id, model, cosine, the constant baseline's cosine on that image, the true
    prompt, its source and length bucket. Row i is prediction i.

    The constant baseline predicts one vector for every image, the normalised mean of these images' true
    embeddings (the constant that maximises the mean cosine), so a model's gain over it is what it learnt from
    the image rather than from the prompts' average.
    """
    rows = match_truth(image_ids, truth, truth_path)
    prompts = [truth.prompts[r] for r in rows]
    targets = truth.embeddings[rows]
    constant = normalise(truth.embeddings[np.unique(rows)].mean(axis=0))
    sourced = Path(truth_path).suffix != ".csv"
    return pd.DataFrame({
        "image_id": image_ids,
        "model": models,
        "cosine": cosine_per_row(predicted, targets),
        "baseline_cosine": cosine_per_row(targets, np.tile(constant, (len(targets), 1))),
        "prompt": prompts,
        "source": [truth.sources[r] if sourced else CSV_SOURCE for r in rows],
        "length": [length_bucket(p) for p in prompts],
    })


def with_baseline(scores: pd.DataFrame) -> pd.DataFrame:
    """``scores`` and, after them, one row per image for the constant baseline (model ``BASELINE``), so the
    leaderboard and the plots show it like a model."""
    baseline = scores[~scores.image_id.duplicated()].assign(model=BASELINE, cosine=lambda f: f.baseline_cosine)
    return pd.concat([scores, baseline], ignore_index=True)


def summarise(scores: pd.DataFrame) -> dict[str, dict]:
    """Per model, best first: whether it is a baseline (its kind, or None for a model), n, mean cosine, the constant
    baseline's mean cosine on the same images and the model's gain over it, and mean cosine per source and per
    prompt-length bucket (in length order)."""
    summary = {}
    for model, group in scores.groupby("model", sort=False):
        by_length = group.groupby("length").cosine.mean()
        summary[str(model)] = {
            "baseline": baseline_kind(str(model)),
            "images": len(group),
            "mean_cosine": float(group.cosine.mean()),
            "baseline_mean_cosine": float(group.baseline_cosine.mean()),
            "gain_over_baseline": float((group.cosine - group.baseline_cosine).mean()),
            "by_source": {str(k): float(v) for k, v in group.groupby("source").cosine.mean().items()},
            "by_length": {k: float(by_length[k]) for k in (*LENGTH_LABELS, "0") if k in by_length},
        }
    return dict(sorted(summary.items(), key=lambda item: -item[1]["mean_cosine"]))


def best_and_worst(scores: pd.DataFrame, grid: int) -> dict[str, dict[str, list[int]]]:
    """Score rows of the images each model shows: its ``grid // 2`` best (best first) and the rest of the
    ``grid`` its worst (worst first), never one image twice."""
    shown = {}
    for model, group in scores.groupby("model", sort=False):
        ranked = list(group.sort_values("cosine", ascending=False, kind="stable").index)
        best = ranked[:min(grid // 2, (len(ranked) + 1) // 2)]
        worst = ranked[len(best):][::-1][:grid - len(best)]
        shown[str(model)] = {"best": best, "worst": worst}
    return shown


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
    """Score every predictions file; write scores.csv, metrics.json (per model, best first), the plots' PNGs
    and report.html (the models, then the baselines: the constant one and any ``mean:``/``nearest:`` predictions)."""
    from img2prompt.evaluate.report import thumbnails, write_html_report
    from img2prompt.predictions import read_predictions

    check_output(out, folder=True)
    frames, vectors = [], []
    for path in prediction_files:
        frame, vecs = read_predictions(path)
        frames.append(frame)
        vectors.append(vecs)
    predictions = pd.concat(frames, ignore_index=True)
    predicted = np.concatenate(vectors)
    truth = load_truth(truth_path, keys=set(predictions.image_id))
    scores = score_table(list(predictions.image_id), list(predictions.model), predicted, truth, truth_path)
    board = with_baseline(scores)
    with_reference = summarise(board)  # the models and the constant baseline, best first
    summary = {model: stats for model, stats in with_reference.items() if model != BASELINE}
    shown = best_and_worst(scores, grid)
    rows = [i for picks in shown.values() for side in picks.values() for i in side]
    decoded = _decode_predictions(rows, predicted, bank, decode_config) if bank else {}
    with all_or_none():  # the three files describe one evaluation: a failed write leaves none of them
        write_text_atomic(out / "scores.csv", scores.to_csv(index=False))
        write_text_atomic(out / "metrics.json", json.dumps(summary, indent=2))
        write_html_report(board, with_reference, out, shown=shown, truth=str(truth_path), decoded=decoded,
                          thumbnails=thumbnails({scores.image_id[i] for i in rows}, images or []))
    return summary


def _decode_predictions(rows: list[int], predicted: np.ndarray, bank: Path,
                        config: DecodeConfig | None) -> dict[int, tuple[str, float]]:
    """Decoded prompt and its cosine to the prediction, for the predictions the report shows."""
    from img2prompt.dictionary import load_decoder

    decoder = load_decoder(bank, config)  # builds the bank's dictionary once, beside it, for interrogate and serve
    results = {i: decoder.decode(predicted[i]) for i in tqdm(rows, desc="evaluate: decode", unit="image",
                                                             disable=None)}
    return {i: (r.text, r.cosine) for i, r in results.items()}
