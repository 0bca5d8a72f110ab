"""The whole offline pipeline, reduced, run the way a user who ran ``pip install img2prompt`` runs it: from a wheel
in a fresh venv, in a folder with no checkout (configs and templates travel as package data). Every stage runs for
real, the ensemble beats both baselines, and a second run resumes from the step markers."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pandas as pd
import pytest

from conftest import SHARED_DATA
from img2prompt.kaggle import validate_submission
from img2prompt.provenance import RUN_WARNING
from learning import Bar, assert_learned

REPO = Path(__file__).resolve().parents[1]
REDUCED = [
    "curate.sources.0.count=400",
    "bank.sources.0.count=300",
    "bank.sources.1.limit=300",
    "bank.sources.2.path=none-such-file.txt",  # a missing bank source is skipped, as in a user's clone
    "generate.size=96",
    "train.model.image_size=96",
    "train.optim.epochs=2",
    "recipe.report_grid=4",
    "recipe.nearest_size=96",  # the shards' size: the nearest baseline at its native 224 px took half the run
    "decode.modifiers=[mediums]",
]
# Bars: the worst of 5 seeds x {1, 2} threads (benchmarks/learning_margins.py --only test_quickstart, 2026-12-07: worst
# at seed 4, 1 thread; medians +0.0327, +0.0286, +0.1719), less a margin of about half the worst.
LEARNING = {
    "ensemble - mean baseline": Bar(0.01, worst=0.0261),
    "full FT - mean baseline": Bar(0.008, worst=0.0230),
    "ensemble - nearest baseline": Bar(0.08, worst=0.1612),
}


def overrides(out: Path, seed: int = 0) -> list[str]:
    """The reduced run into ``out``; the bank reads ../shared's real prompts and the Kaggle sample images are predicted
    and decoded when ../shared is there, as in the real quickstart run from the checkout."""
    shared = SHARED_DATA.is_dir()
    images = [str(SHARED_DATA / "kaggle_sample" / "images")] if shared else []
    bank = [f"bank.sources.1.path={SHARED_DATA / 'prompts' / '900k_dedup_08_split_dedup_wt_wv.txt'}"] if shared else []
    return [*REDUCED, *bank, f"curate.sources.0.seed={seed}", f"train.seed={seed}", f"recipe.out={out}",
            f"recipe.images={json.dumps(images)}"]


def run_quickstart(python: Path | str, out: Path, seed: int = 0, env: dict[str, str] | None = None
                   ) -> subprocess.CompletedProcess:
    """``python -m img2prompt quickstart`` with the reduced settings, from ``out``'s parent (no checkout there)."""
    args = [arg for item in overrides(out, seed) for arg in ("--set", item)]
    return subprocess.run([str(python), "-m", "img2prompt", "quickstart", *args], cwd=out.parent, env=env,
                          capture_output=True, text=True, timeout=900)


def measure(seed: int, root: Path) -> dict[str, float]:
    """The reduced quickstart on prompts and weights of ``seed``: the quantities ``LEARNING`` bounds."""
    run = run_quickstart(sys.executable, root / "quickstart", seed)
    assert run.returncode == 0, run.stderr[-3000:]
    return quantities(json.loads((root / "quickstart" / "summary.json").read_text())["test_mean_cosine"])


def quantities(scores: dict[str, float]) -> dict[str, float]:
    return {"ensemble - mean baseline": scores["ensemble"] - scores["mean_baseline"],
            "full FT - mean baseline": scores["lite0_full_ft"] - scores["mean_baseline"],
            "ensemble - nearest baseline": scores["ensemble"] - scores["nearest_baseline"]}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A fresh venv holding only the built wheel; the pinned dependencies come from this venv's site-packages
    (a ``.pth`` line, which adds the folder without running the editable install's hook)."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"  # a clean copy: an in-tree build/ folder would ship files deleted since
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source)
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(root / "dist"), str(source)], check=True, capture_output=True)
    wheel = next((root / "dist").glob("img2prompt-*.whl"))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "stack.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", site, str(wheel)],
                   check=True, capture_output=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return python, env


@pytest.fixture(scope="module")
def run(wheel, tmp_path_factory) -> tuple[Path, dict]:
    python, env = wheel
    out = tmp_path_factory.mktemp("user") / "quickstart"
    done = run_quickstart(python, out, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return out, json.loads((out / "summary.json").read_text())


def test_the_wheel_holds_the_package_and_its_configs(wheel, tmp_path):
    python, env = wheel
    where = subprocess.run([str(python), "-c", "import img2prompt, img2prompt.config as c; "
                            "print(img2prompt.__file__); print(c.packaged_configs())"],
                           cwd=tmp_path, env=env, check=True, capture_output=True, text=True).stdout.split()
    assert not where[0].startswith(str(REPO)) and Path(where[1], "recipe", "quickstart.yaml").is_file()


def test_every_output_exists(run):
    out, _ = run
    for name in ("prompts/prompts.parquet", "prompts/report.html", "bank/prompts.parquet", "shards/manifest.jsonl",
                 "models/lite0_full_ft/model.safetensors", "models/lite0_linear_probe/model.safetensors",
                 "ensemble.yaml", "report/report.html", "report/histogram.png", "report/metrics.json",
                 "summary.json", "config.yaml"):
        assert (out / name).stat().st_size > 0, name
    if not SHARED_DATA.is_dir():
        return
    decoded = pd.read_csv(out / "decoded.csv")
    assert len(decoded) == 7 and decoded.text.str.len().min() > 0
    ids, _ = validate_submission(out / "submission.csv")
    assert len(ids) == 7


def test_trained_models_beat_both_baselines(run):
    _, summary = run
    assert_learned(quantities(summary["test_mean_cosine"]), LEARNING)
    assert summary["note"] == RUN_WARNING  # these are not real-image scores, said once


def test_a_second_run_resumes_from_the_markers(run, wheel):
    out, summary = run
    python, env = wheel
    again = run_quickstart(python, out, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((out / "summary.json").read_text()) == summary
    assert again.stdout.count("already done") == len(summary["timings_s"]) and " ..." not in again.stdout


def readme_blocks() -> list[tuple[str, str]]:
    """The README's code blocks marked ``<!-- runnable -->``: (language, code)."""
    text = (REPO / "README.md").read_text()
    return re.findall(r"<!-- runnable -->\n```(bash|python)\n(.*?)```", text, flags=re.S)


def test_the_readmes_runnable_blocks_run_as_written_after_the_quickstart(run, wheel, tmp_path):
    """Each marked block, run from a folder laid out like a clone after ``make quickstart`` (``runs/quickstart`` is
    this module's reduced run, ``examples/`` the checkout's), with ``img2prompt`` the installed wheel's command."""
    out, _ = run
    python, env = wheel
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "quickstart").symlink_to(out)
    (tmp_path / "examples").symlink_to(REPO / "examples")
    blocks = readme_blocks()
    assert [language for language, _ in blocks] == ["bash", "python"]
    for language, code in blocks:
        argv = (["bash", "-euo", "pipefail", "-c", f'img2prompt() {{ "{python}" -m img2prompt "$@"; }}\n{code}']
                if language == "bash" else [str(python), "-c", code])
        done = subprocess.run(argv, cwd=tmp_path, env={**env, "HF_HUB_OFFLINE": "1"}, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, f"{code}\n{done.stderr[-3000:]}"
    answers = [json.loads(line) for line in (tmp_path / "answers.jsonl").read_text().splitlines()]
    assert len(answers) == 4 and all(a["prompt"] and a["mode"] == "best" and a["warning"] for a in answers)
    ids, _ = validate_submission(tmp_path / "submission.csv")
    assert sorted(ids) == ["chickens", "compass", "money", "raccoons"]
    assert done.stdout.splitlines()[-1] == "(2, 384)"

