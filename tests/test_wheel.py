"""``pip install img2prompt`` (a wheel, not this checkout) runs ``img2prompt quickstart``: configs and templates
travel as package data."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY_QUICKSTART = [
    "curate.sources.0.count=120", "bank.sources.0.count=60", "generate.size=64", "train.model.image_size=64",
    "train.optim.epochs=1",
    "quickstart.models.1.overrides=[finetune.method=lp_ft,finetune.lp_steps=100,optim.epochs=1]",
    "quickstart.report_grid=2", "decode.modifiers=[mediums]",
]


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory) -> tuple[Path, dict[str, str]]:
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


def test_the_wheel_ships_the_configs_and_runs_the_quickstart(wheel_env, tmp_path):
    python, env = wheel_env
    where = subprocess.run([str(python), "-c", "import img2prompt, img2prompt.config as c; "
                            "print(img2prompt.__file__); print(c.packaged_configs())"],
                           cwd=tmp_path, env=env, check=True, capture_output=True, text=True).stdout.split()
    assert not where[0].startswith(str(REPO)) and Path(where[1], "quickstart.yaml").is_file()
    args = [arg for item in [*TINY_QUICKSTART, f"quickstart.out={tmp_path / 'qs'}"] for arg in ("--set", item)]
    run = subprocess.run([str(python), "-m", "img2prompt", "quickstart", *args], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads((tmp_path / "qs" / "summary.json").read_text())
    assert set(summary["test_mean_cosine"]) >= {"ensemble", "mean_baseline"}
    assert (tmp_path / "qs" / "report" / "report.html").stat().st_size > 0
