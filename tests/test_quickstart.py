"""The whole offline pipeline, reduced: every stage runs for real and the ensemble beats the constant baseline."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from conftest import SHARED_DATA
from img2prompt.kaggle import validate_submission
from img2prompt.provenance import MODEL_WARNING, SCORE_WARNING
from img2prompt.quickstart import quickstart

REDUCED = [
    "curate.sources.0.count=400",
    "bank.sources.0.count=300",
    "bank.sources.1.limit=300",
    "bank.sources.2.path=none-such-file.txt",  # a missing bank source is skipped, as in a user's clone
    "generate.size=96",
    "train.model.image_size=96",
    "train.optim.epochs=2",
    "quickstart.report_grid=4",
    "decode.modifiers=[mediums]",
]


def overrides(out: Path) -> list[str]:
    """The Kaggle sample images are predicted and decoded when ../shared is there, as in the real quickstart."""
    images = [str(SHARED_DATA / "kaggle_sample" / "images")] if SHARED_DATA.is_dir() else []
    return [*REDUCED, f"quickstart.out={out}", f"quickstart.images={json.dumps(images)}"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("quickstart")
    return out, quickstart(None, overrides(out))


def test_every_output_exists(run):
    out, summary = run
    for name in ("prompts/prompts.parquet", "prompts/report.html", "bank/prompts.parquet", "shards/manifest.jsonl",
                 "models/lite0_full_ft/model.safetensors", "models/lite0_linear_probe/model.safetensors",
                 "ensemble.yaml", "report/report.html", "report/histogram.png", "report/metrics.json",
                 "summary.json", "config.yaml"):
        assert (out / name).stat().st_size > 0, name
    assert json.loads((out / "summary.json").read_text()) == summary
    if not SHARED_DATA.is_dir():
        return
    decoded = pd.read_csv(out / "decoded.csv")
    assert len(decoded) == 7 and decoded.text.str.len().min() > 0
    ids, _ = validate_submission(out / "submission.csv")
    assert len(ids) == 7


def test_trained_models_beat_both_baselines(run):
    """Reduced run (96 px, 2 epochs): ensemble 0.623, full FT 0.614, mean 0.585, nearest image 0.461."""
    _, summary = run
    scores = summary["test_mean_cosine"]
    assert scores["ensemble"] > scores["mean_baseline"] + 0.02, scores
    assert scores["lite0_full_ft"] > scores["mean_baseline"] + 0.01, scores
    assert scores["ensemble"] > scores["nearest_baseline"] + 0.1, scores
    assert summary["note"] == f"each model here {MODEL_WARNING}; {SCORE_WARNING}"  # these are not real-image scores


def test_a_second_run_resumes_from_the_markers(run, capsys):
    out, summary = run
    assert quickstart(None, overrides(out)) == summary
    printed = capsys.readouterr().out
    assert printed.count("already done") == len(summary["timings_s"]) and " ..." not in printed
