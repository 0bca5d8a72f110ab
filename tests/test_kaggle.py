"""Kaggle file formats, the metric and `validate-submission`'s one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from img2prompt.cli import app
from img2prompt.errors import Img2PromptError
from img2prompt.kaggle import read_prompts_csv, read_submission, validate_submission, write_submission
from img2prompt.space import cosine_per_row, mean_cosine


def unit_rows(n: int, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(n, 384)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_reads_doubled_quotes(shared_data):
    frame = read_prompts_csv(shared_data / "kaggle_sample" / "prompts.csv")
    assert len(frame) == 7
    last = frame.set_index("imgId").loc["f27825b2c", "prompt"]
    assert last.endswith('"Donuts. It\'s what\'s for dinner!"')


def test_host_submission_round_trips_bit_for_bit(shared_data, tmp_path):
    host = shared_data / "kaggle_sample" / "sample_submission.csv"
    ids, vectors = validate_submission(host)
    assert len(ids) == 7 and vectors.shape == (7, 384)
    out = write_submission(ids, vectors, tmp_path / "again.csv")
    assert out.read_bytes() == host.read_bytes()


def test_metric_values():
    a = np.array([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]])
    b = np.array([[1.0, 0.0], [0.0, -1.0], [1.0, 0.0]])
    np.testing.assert_allclose(cosine_per_row(a, b), [1.0, -1.0, 0.0])
    assert mean_cosine(a[:2], b[:2]) == pytest.approx(0.0)
    rows = unit_rows(4)
    assert mean_cosine(rows, rows) == pytest.approx(1.0)


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def good(tmp_path):
    return write_submission(["img1", "img2"], unit_rows(2), tmp_path / "good.csv")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda lines: ["id,value", *lines[1:]], "line 1: expected header"),
        (lambda lines: lines[:-1], "img2 has 383 rows"),
        (lambda lines: lines[:200] + lines[201:], "out of order"),
        (lambda lines: [*lines[:5], lines[5].split(",")[0] + ",nan", *lines[6:]], "line 6: value 'nan' is not finite"),
        (lambda lines: [*lines[:5], lines[5].split(",")[0] + ",inf", *lines[6:]], "not finite"),
        (lambda lines: [*lines[:5], lines[5].split(",")[0] + ",abc", *lines[6:]], "not a number"),
        (lambda lines: [*lines[:5], "img1-5,0.1", *lines[6:]], "is not <imgId>_<dim>"),
        (lambda lines: [*lines, *lines[1:385]], "appears twice"),
        (lambda lines: [*lines[:2], lines[2].split(",")[0] + ",5.0", *lines[3:]], "has norm"),
    ],
)
def test_rejects_bad_submissions_naming_the_row(good, mutate, message):
    lines = good.read_text().splitlines()
    bad = write_lines(good.with_name("bad.csv"), mutate(lines))
    with pytest.raises(Img2PromptError, match=message) as info:
        validate_submission(bad)
    assert str(info.value).startswith(str(bad))
    assert "\n" not in str(info.value)


def test_id_set_is_checked(good):
    validate_submission(good, ["img1", "img2"])
    with pytest.raises(Img2PromptError, match="missing image img3"):
        validate_submission(good, ["img1", "img2", "img3"])
    with pytest.raises(Img2PromptError, match="unknown image img2"):
        validate_submission(good, ["img1"])


def test_cli_validate_submission_exit_codes(good, tmp_path):
    import subprocess
    import sys

    ok = CliRunner().invoke(app, ["validate-submission", str(good)])
    assert ok.exit_code == 0 and "2 images x 384 dims" in ok.output
    bad = write_lines(tmp_path / "bad.csv", good.read_text().splitlines()[:-1])
    run = subprocess.run(
        [sys.executable, "-c", "from img2prompt.cli import main; main()", "validate-submission", str(bad)],
        capture_output=True, text=True, check=False,
    )
    assert run.returncode == 1
    assert run.stderr.strip().count("\n") == 0
    assert run.stderr.startswith(f"error: {bad}: image img2 has 383 rows")


def test_cli_scores_against_prompts(shared_data):
    sample = shared_data / "kaggle_sample"
    result = CliRunner().invoke(
        app, ["validate-submission", str(sample / "sample_submission.csv"), "--prompts", str(sample / "prompts.csv")]
    )
    assert result.exit_code == 0, result.output
    assert "mean cosine to the true prompts: 1.0000" in result.output


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"id,text\n1,a cat\n", "expected columns imgId,prompt"),
        (b"imgId,prompt\n1,\n", "line 2: empty prompt"),
        (b"imgId,prompt\n1,a cat\n1,a dog\n", "duplicate imgId 1"),
        (b"imgId,prompt\n1,caf\xe9\n", "not UTF-8"),
    ],
)
def test_bad_prompt_csv(tmp_path, content, message):
    path = tmp_path / "prompts.csv"
    path.write_bytes(content)
    with pytest.raises(Img2PromptError, match=message):
        read_prompts_csv(path)


def test_read_submission_missing_file(tmp_path):
    with pytest.raises(Img2PromptError, match="file not found"):
        read_submission(tmp_path / "none.csv")


def test_failed_write_keeps_previous_file(tmp_path, good):
    before = good.read_bytes()
    with pytest.raises(ValueError):
        write_submission(["img1"], unit_rows(2), good)
    assert good.read_bytes() == before
