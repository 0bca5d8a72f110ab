"""Ensemble weights: simplex constraints, recovery of the right blend, the YAML round trip through predict."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from img2prompt.ensemble import fit_weights, run_ensemble
from img2prompt.errors import Img2PromptError
from img2prompt.models.ensemble import blend, read_spec
from img2prompt.models.load import load_model
from img2prompt.predictions import write_predictions
from img2prompt.prompt_table import write_table
from img2prompt.space import mean_cosine, normalise
from learning import Bar, assert_learned


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    return normalise(rng.standard_normal((n, 384)))


# What the weight fits must find, on synthetic members of known quality. The data are drawn from ``seed``; the fits
# are deterministic, so only another machine's float rounding (BLAS kernels, thread count) moves a value. Bars: the
# worst of seeds 0-4 x {1, 2} threads (benchmarks/learning_margins.py), minus a margin.
LEARNING = {
    "blend of equal members - best member": Bar(0.03, worst=0.1304),
    "0.05 - equal members' weight gap to 0.5": Bar(0.0, worst=0.0477),
    "weight of the good member beside a useless one": Bar(0.85, worst=0.9949),
    "per-dimension weight on each member's good half": Bar(0.7, worst=0.9791),
    "per-dimension blend - scalar blend": Bar(0.002, worst=0.2800),
}


def equal_members(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two members with the same noise around the truth: equal weights, and their blend cancels some noise."""
    rng = np.random.default_rng(seed)
    truth = unit(rng, 400)
    return np.stack([normalise(truth + 0.08 * rng.standard_normal(truth.shape)) for _ in range(2)]), truth


def good_and_useless(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed + 1)
    truth = unit(rng, 400)
    good = normalise(truth + 0.05 * rng.standard_normal(truth.shape))
    return np.stack([good, unit(rng, 400)]), truth


def half_right(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Member 0 is nearly exact on the first half of the dimensions, member 1 on the second."""
    rng = np.random.default_rng(seed + 2)
    truth = unit(rng, 300)
    noise = rng.standard_normal((2, *truth.shape)) * 0.1
    noise[0, :, :192] *= 0.05
    noise[1, :, 192:] *= 0.05
    return normalise(truth[None] + noise), truth


def measure(seed: int, root: Path | None = None) -> dict[str, float]:
    """The three fits on the data of ``seed``: the quantities ``LEARNING`` bounds."""
    members, truth = equal_members(seed)
    equal = fit_weights(members, truth)
    best_member = max(mean_cosine(m, truth) for m in members)
    pair, pair_truth = good_and_useless(seed)
    halves, halves_truth = half_right(seed)
    per_dim = fit_weights(halves, halves_truth, per_dim=True)
    scalar = blend(halves, fit_weights(halves, halves_truth))
    return {"blend of equal members - best member": mean_cosine(blend(members, equal), truth) - best_member,
            "0.05 - equal members' weight gap to 0.5": 0.05 - float(np.abs(equal - 0.5).max()),
            "weight of the good member beside a useless one": float(fit_weights(pair, pair_truth)[0]),
            "per-dimension weight on each member's good half": float(min(per_dim[0, :192].mean(),
                                                                         per_dim[1, 192:].mean())),
            "per-dimension blend - scalar blend": (mean_cosine(blend(halves, per_dim), halves_truth)
                                                   - mean_cosine(scalar, halves_truth))}


def test_the_fits_find_the_right_blends() -> None:
    assert_learned(measure(0), LEARNING)


def test_weights_are_on_the_simplex_scalar_or_per_dimension() -> None:
    members, truth = equal_members(0)
    weights = fit_weights(members, truth)
    assert weights.shape == (2,) and (weights >= 0).all() and weights.sum() == pytest.approx(1.0, abs=1e-6)
    halves, halves_truth = half_right(0)
    weights = fit_weights(halves, halves_truth, per_dim=True)
    assert weights.shape == (2, 384)
    assert np.allclose(weights.sum(axis=0), 1.0, atol=1e-5) and (weights >= 0).all()


def _table(path: Path, vectors: np.ndarray, split: str = "train") -> Path:
    n = len(vectors)
    frame = pd.DataFrame({"prompt_id": [f"p{i}" for i in range(n)], "prompt": [f"prompt {i}" for i in range(n)],
                          "source": "test", "tier": "hq", "cluster": range(n), "split": split})
    return write_table(frame, normalise(vectors), path)


def test_ensemble_yaml_of_baselines_loads_as_one_model_and_survives_a_move(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    truth = unit(rng, 40)
    work = tmp_path / "work"
    truth_path = _table(work / "truth.parquet", truth, split="val")
    # Two "mean" baselines whose constant vectors differ; the truth lies near the second one.
    mean_a = _table(work / "a.parquet", unit(rng, 5))
    centre = normalise(truth.mean(axis=0, keepdims=True))
    mean_b = _table(work / "b.parquet", np.repeat(centre, 5, axis=0))
    files = []
    for name, source in (("a", mean_a), ("b", mean_b)):
        model = load_model(f"mean:{source}")
        files.append(write_predictions([f"p{i}" for i in range(40)], model.name,
                                       model.embed([Image.new("RGB", (4, 4))] * 40), work / f"{name}.preds.parquet"))
    out = work / "models" / "ensemble.yaml"
    spec = run_ensemble(files, truth_path, out)
    assert spec.images == 40 and spec.members[1].weight > 0.9
    assert spec.score == pytest.approx(max(spec.member_scores.values()), abs=0.01)
    assert read_spec(out).members[0].model == "mean:../a.parquet"  # portable: relative to the YAML
    moved = tmp_path / "moved"
    shutil.copytree(work, moved)
    shutil.rmtree(work)
    ensemble = load_model(moved / "models" / "ensemble.yaml")
    expected = normalise(spec.members[0].weight * load_model(f"mean:{moved / 'a.parquet'}").vector
                         + spec.members[1].weight * centre[0])
    assert np.allclose(ensemble.embed([Image.new("RGB", (4, 4))])[0], expected, atol=1e-6)


def test_one_model_is_not_an_ensemble(tmp_path: Path) -> None:
    truth = _table(tmp_path / "t.parquet", unit(np.random.default_rng(4), 3))
    preds = write_predictions(["p0", "p1", "p2"], "m", unit(np.random.default_rng(5), 3), tmp_path / "p.parquet")
    with pytest.raises(Img2PromptError, match="at least 2 models"):
        run_ensemble([preds], truth, tmp_path / "e.yaml")


def test_a_broken_ensemble_yaml_is_a_one_line_error_naming_it(tmp_path: Path) -> None:
    bad = tmp_path / "e.yaml"
    bad.write_text(yaml.safe_dump({"ensemble": {"members": [{"model": "x", "weight": "heavy"}]}}))
    with pytest.raises(Img2PromptError, match=r"e\.yaml: ensemble\.members\.0\.weight"):
        load_model(bad)
