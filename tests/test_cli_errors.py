"""Careless input to every verb gets one line naming the file and exit status 1 (the hardening issue's CLI cases)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from img2prompt.predictions import write_predictions
from img2prompt.prompt_table import prompt_id, write_table
from img2prompt.space import normalise


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "img2prompt", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd)


def one_line_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 1, (result.returncode, result.stderr[-1500:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-1500:]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli")
    vectors = normalise(np.random.default_rng(0).standard_normal((3, 384)))
    prompts = ["a red fox", "a blue bird", "a green frog"]
    frame = pd.DataFrame({"prompt_id": [prompt_id(p) for p in prompts], "prompt": prompts, "source": "t",
                          "tier": "hq", "cluster": range(3), "split": "train"})
    return {"bank": write_table(frame, vectors, root / "bank.parquet"),
            "predictions": write_predictions(["a", "b", "c"], "m", vectors, root / "predictions.parquet"),
            "empty": write_predictions([], "m", np.zeros((0, 384), np.float32), root / "empty.parquet"),
            "root": root}


@pytest.mark.parametrize(("verb", "section"), [("train", "trian"), ("generate", "generat"), ("curate", "curat")])
def test_a_misspelled_section_is_refused_by_every_verb(tmp_path, verb, section):
    config = tmp_path / "typo.yaml"
    config.write_text(f"{section}:\n  seed: 1\n")
    one_line_error(run(verb, str(config)), f"unknown section '{section}'", "did you mean")


def test_a_misspelled_override_section_is_refused(files):
    one_line_error(run("decode", str(files["bank"]), "--text", "x", "--set", "decod.mode=best"),
                   "unknown section 'decod' (did you mean 'decode'?)")


def test_an_empty_predictions_table_is_one_line(files):
    one_line_error(run("evaluate", str(files["empty"]), "--truth", str(files["bank"]), "--out",
                       str(files["root"] / "report")), "empty.parquet: the predictions table has no rows")


def test_a_predictions_file_given_as_the_bank_is_named_as_such(files):
    one_line_error(run("decode", str(files["predictions"]), "--text", "a red fox"),
                   "predictions.parquet: missing column(s) prompt", "(it is a predictions table)")


def test_a_damaged_shard_is_one_line_naming_it(tmp_path):
    from generate_tables import write_scenes_table
    from img2prompt.generate.run import GenerateConfig, generate
    from img2prompt.shards import find_shards

    write_scenes_table(tmp_path / "prompts.parquet", 8)
    shards = generate(GenerateConfig(prompts=tmp_path / "prompts.parquet", out=tmp_path / "shards", size=16,
                                     samples_per_shard=100))
    shard = find_shards(shards)[0]
    shard.write_bytes(shard.read_bytes()[:700] + b"\\0garbage" * 50)  # a header torn mid-shard
    one_line_error(run("predict", f"mean:{tmp_path / 'prompts.parquet'}", str(shards), "--out",
                       str(tmp_path / "p.parquet")), str(shard))
    assert not (tmp_path / "p.parquet").exists()
