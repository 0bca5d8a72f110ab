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


def curate_config(tmp_path: Path, source: Path) -> Path:
    config = tmp_path / "curate.yaml"
    config.write_text(f"curate:\n  out: {tmp_path / 'run'}\n  progress: false\n  sources:\n"
                      f"    - {{name: s, type: text, path: {source}}}\n")
    return config


@pytest.mark.parametrize(("content", "message"), [
    (b"\xff\xfe\x80\x81 \xc3\x28\n" * 100, "none of the 100 rows of source 's' is a usable prompt"),
    (b"", "source 's' is empty: not one prompt was read"),
])
def test_a_curate_source_without_one_usable_prompt_stops_the_run(content, message, tmp_path, cli):
    """The hardening probe (issue 23): 100 undecodable lines, or an empty file, gave exit 0 and an empty table."""
    source = tmp_path / "source.txt"
    source.write_bytes(content)
    code, stderr = cli("curate", curate_config(tmp_path, source))
    assert code == 1 and stderr.startswith(f"error: {source}: {message}") and len(stderr.splitlines()) == 1, stderr
    assert not (tmp_path / "run" / "prompts.parquet").exists()


def test_an_empty_or_header_only_prompts_csv_is_an_error(tmp_path, cli):
    (tmp_path / "header.csv").write_text("imgId,prompt\n")
    code, stderr = cli("embed", tmp_path / "header.csv", "--out", tmp_path / "e.parquet")
    assert (code, stderr) == (1, f"error: {tmp_path / 'header.csv'}: no prompts: the file has a header and no rows\n")
    assert not (tmp_path / "e.parquet").exists()


@pytest.mark.parametrize("verb", ["predict", "interrogate"])
def test_an_empty_image_folder_is_named(verb, tmp_path, files, cli):
    (tmp_path / "empty").mkdir()
    model = f"mean:{files['bank']}"
    argv = (["predict", model, tmp_path / "empty", "--out", tmp_path / "p.parquet"] if verb == "predict"
            else ["interrogate", tmp_path / "empty", "--model", model, "--bank", files["bank"]])
    code, stderr = cli(*argv)
    assert code == 1 and stderr.startswith(f"error: {tmp_path / 'empty'}: no image files in this folder (.png, "), \
        stderr
    assert len(stderr.splitlines()) == 1


@pytest.mark.parametrize(("argv", "what"), [(["embed", "{dir}", "--out", "{dir}/e.parquet"], "a CSV file"),
                                            (["validate-submission", "{dir}"], "a submission CSV")])
def test_a_folder_given_as_a_csv_is_one_line(argv, what, tmp_path, cli):
    code, stderr = cli(*(arg.format(dir=tmp_path) for arg in argv))
    assert (code, stderr) == (1, f"error: {tmp_path}: is a folder, not {what}\n")
