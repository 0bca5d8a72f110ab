"""Evaluation: exact scores per source and prompt length, id matching, the report files, real Kaggle data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from img2prompt.cli import app
from img2prompt.decode import DecodeConfig
from img2prompt.errors import Img2PromptError
from img2prompt.evaluate import BASELINE
from img2prompt.evaluate.run import best_and_worst, length_bucket, run_evaluate, summarise, with_baseline
from img2prompt.predictions import write_predictions
from img2prompt.prompt_table import write_table
from img2prompt.space import normalise
from img2prompt.truth import load_truth

PROMPTS = ["a cat", "a <b>bold</b> dog on a red sofa at night", "the moon"]
SOURCES = ["coco", "diffusiondb", "coco"]


@pytest.fixture
def truth(tmp_path: Path) -> tuple[Path, np.ndarray]:
    vectors = np.eye(384, dtype=np.float32)[:3]
    frame = pd.DataFrame({"prompt_id": ["p0", "p1", "p2"], "prompt": PROMPTS, "source": SOURCES, "tier": "hq",
                          "cluster": range(3), "split": "val"})
    return write_table(frame, vectors, tmp_path / "truth.parquet"), vectors


def test_length_buckets() -> None:
    assert [length_bucket(p) for p in ("cat", "a b c d e f", "w " * 20, "w " * 41)] == ["1-5", "6-10", "11-20",
                                                                                      "41+"]


def test_summary_ranks_models_and_orders_length_buckets_by_number() -> None:
    lengths = ["11-20", "6-10", "1-5", "41+"]
    scores = pd.DataFrame({"image_id": [f"i{k}" for k in range(4)] * 2, "model": ["a"] * 4 + ["b"] * 4,
                           "cosine": [0.1, 0.2, 0.3, 0.4] + [0.9] * 4, "baseline_cosine": 0.5, "prompt": "p",
                           "source": "s", "length": lengths * 2})
    summary = summarise(scores)
    assert list(summary) == ["b", "a"]  # best first
    assert list(summary["a"]["by_length"]) == ["1-5", "6-10", "11-20", "41+"]
    assert summary["a"]["gain_over_baseline"] == pytest.approx(0.25 - 0.5)
    board = summarise(with_baseline(scores))  # what the report ranks: the baseline in its place
    assert list(board) == ["b", BASELINE, "a"] and board[BASELINE]["images"] == 4
    assert board[BASELINE]["gain_over_baseline"] == 0


def test_each_model_shows_its_best_and_worst_images_once() -> None:
    scores = pd.DataFrame({"image_id": [f"i{k}" for k in range(7)], "model": "m",
                           "cosine": [0.5, 0.1, 0.9, 0.3, 0.7, 0.2, 0.8]})
    assert best_and_worst(scores, 4) == {"m": {"best": [2, 6], "worst": [1, 5]}}
    few = best_and_worst(scores, 24)["m"]  # fewer images than the grid: each shown once, best half first
    assert few == {"best": [2, 6, 4, 0], "worst": [1, 5, 3]}


def test_scores_are_exact_per_source_and_length_and_sample_keys_match(tmp_path: Path, truth) -> None:
    path, vectors = truth
    predicted = vectors.copy()
    predicted[2] = normalise(vectors[2] + vectors[0])  # cosine 1/sqrt(2) to its truth
    # Generated images are named <prompt_id>-<k>: they score against the prompt_id's row.
    preds = write_predictions(["p0", "p1-0", "p2-3"], "m", predicted, tmp_path / "m.parquet")
    other = write_predictions(["p0"], "zero", normalise(vectors[[1]]), tmp_path / "z.parquet")
    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (300, 200), "red").save(tmp_path / "imgs" / "p1-0.png")
    summary = run_evaluate([preds, other], path, tmp_path / "report", images=[tmp_path / "imgs" / "p1-0.png"])
    m = summary["m"]
    assert m["images"] == 3
    assert m["mean_cosine"] == pytest.approx((2 + 2 ** -0.5) / 3, abs=1e-6)
    assert m["by_source"] == pytest.approx({"coco": (1 + 2 ** -0.5) / 2, "diffusiondb": 1.0}, abs=1e-6)
    assert m["by_length"] == pytest.approx({"1-5": (1 + 2 ** -0.5) / 2, "6-10": 1.0}, abs=1e-6)
    assert summary["zero"]["mean_cosine"] == pytest.approx(0.0, abs=1e-7)
    # The constant baseline predicts normalise(e0 + e1 + e2) for every image: cosine 1/sqrt(3) to each truth.
    third = 3 ** -0.5
    assert m["baseline_mean_cosine"] == pytest.approx(third, abs=1e-6)
    assert m["gain_over_baseline"] == pytest.approx(m["mean_cosine"] - third, abs=1e-6)
    assert summary["zero"]["gain_over_baseline"] == pytest.approx(-third, abs=1e-6)  # scored on p0 alone
    assert list(summary) == ["m", "zero"]  # best first; the baseline is no model of metrics.json
    out = tmp_path / "report"
    assert json.loads((out / "metrics.json").read_text()) == summary
    scores = pd.read_csv(out / "scores.csv")
    assert list(scores.columns) == ["image_id", "model", "cosine", "baseline_cosine", "prompt", "source", "length"]
    assert len(scores) == 4 and scores.baseline_cosine.to_numpy() == pytest.approx([third] * 4, abs=1e-6)
    page = (out / "report.html").read_text()
    assert f"<b>{BASELINE}</b>" in page.split("</table>")[0]  # but the leaderboard shows it
    for png in ("histogram.png", "boxplot.png"):  # the plots, also beside the page for slides
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "a &lt;b&gt;bold&lt;/b&gt; dog" in page and "<b>bold</b>" not in page  # prompts are escaped
    assert page.count("data:image/jpeg;base64,") == 1  # the one image given is inlined
    assert page.count("data:image/png;base64,") == 2  # and both plots


def test_the_report_shows_the_decoded_predicted_prompt(tmp_path: Path, text_embedder) -> None:
    prompts = ["a red apple on a table", "a castle in the clouds, fantasy art", "a dog on the beach, photography"]
    vectors = text_embedder.encode(prompts)
    frame = pd.DataFrame({"prompt_id": ["p0", "p1", "p2"], "prompt": prompts, "source": "test", "tier": "hq",
                          "cluster": range(3), "split": "val"})
    truth = write_table(frame, vectors, tmp_path / "truth.parquet")
    preds = write_predictions(["p0", "p1"], "m", vectors[[0, 2]], tmp_path / "m.parquet")
    config = DecodeConfig(modifiers=["mediums"], cache_dir=None, budget_s=0.2)
    run_evaluate([preds], truth, tmp_path / "r", bank=truth, decode_config=config)
    page = (tmp_path / "r" / "report.html").read_text()
    # p1 was predicted as the dog prompt: the report decodes that prediction, not the truth.
    assert page.count('class="tag decoded"') == 2 and "a dog on the beach" in page.split("castle in the clouds")[1]
    assert "(cosine to the prediction " in page and "not a confidence" in page  # says what the number is


def test_a_prediction_without_truth_names_the_truth_file(tmp_path: Path, truth) -> None:
    path, vectors = truth
    preds = write_predictions(["p9"], "m", vectors[:1], tmp_path / "m.parquet")
    with pytest.raises(Img2PromptError, match=r"truth\.parquet: no true prompt for image 'p9'"):
        run_evaluate([preds], path, tmp_path / "out")


def test_the_host_sample_submission_scores_one_against_its_own_prompts(tmp_path: Path, shared_data: Path) -> None:
    sample = shared_data / "kaggle_sample"
    truth = load_truth(sample / "prompts.csv")
    assert len(truth.keys) == 7
    runner = CliRunner()
    result = runner.invoke(app, ["evaluate", str(sample / "sample_submission.csv"), "--truth",
                                 str(sample / "prompts.csv"), "--out", str(tmp_path / "r"),
                                 "--images", str(sample / "images")])
    assert result.exit_code == 0, result.output
    assert "sample_submission.csv: mean cosine 1.0000 over 7 images" in result.output
    assert "over the constant baseline's" in result.output
    assert (tmp_path / "r" / "report.html").read_text().count("data:image/jpeg;base64,") == 7
    # A prompts CSV names no source: the rows say so rather than borrowing the file's name.
    assert set(pd.read_csv(tmp_path / "r" / "scores.csv").source) == {"csv"}
