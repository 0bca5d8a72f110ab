"""``img2prompt interrogate`` and ``Interrogator``: one call from image to prompt, the same answer twice."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from img2prompt import Interrogator
from img2prompt.answers import Answer
from img2prompt.decode import DecodeConfig
from img2prompt.models.regressor import ModelConfig, Regressor
from img2prompt.prompt_table import prompt_id, write_table
from test_decode import BANK
from test_predict import noise_image


@pytest.fixture(scope="module")
def setup(tmp_path_factory, text_embedder) -> tuple[Path, Path, Path, Path]:
    root = tmp_path_factory.mktemp("interrogate")
    frame = pd.DataFrame({"prompt_id": [prompt_id(p) for p in BANK], "prompt": BANK, "source": "test",
                          "tier": "hq", "cluster": range(len(BANK)), "split": "train"})
    bank = write_table(frame, text_embedder.encode(BANK), root / "bank.parquet")
    torch.manual_seed(0)
    checkpoint = Regressor(ModelConfig(backbone="efficientnet_lite0", pretrained=False, tiny=True)).save_pretrained(
        root / "ckpt")
    images = root / "images"
    images.mkdir()
    for i in range(3):
        noise_image(i, 48).save(images / f"im{i}.png")
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    # One dictionary cache for the module: the first run builds it, every later one (and the Python API) reads it.
    (root / "decode.yaml").write_text(f"decode:\n  modifiers: [mediums]\n  cache_dir: {root / 'cache'}\n")
    return bank, checkpoint, images, root / "decode.yaml"


def interrogate(*args: str, python: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *python, "-m", "img2prompt", "interrogate", *args], capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def folder_runs(setup) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
    """The folder interrogated twice, in two processes; the second lists its imports on stderr (-X importtime)."""
    bank, checkpoint, images, config = setup
    args = [str(images), "--model", str(checkpoint), "--bank", str(bank), "--mode", "fast", "-c", str(config)]
    return interrogate(*args), interrogate(*args, python=("-X", "importtime"))


def test_one_line_per_image_identical_on_a_second_run_and_unreadable_images_listed(setup, folder_runs):
    _, _, images, _ = setup
    first, second = folder_runs
    assert first.returncode == 0, first.stderr[-2000:]
    lines = first.stdout.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == [str(images / f"im{i}.png") for i in range(3)]
    assert all(line.split("\t")[1] for line in lines)
    assert first.stdout == second.stdout
    assert "skipped" in first.stderr and "broken.png" in first.stderr


def test_a_second_run_imports_nothing_it_does_not_need(folder_runs):
    """Start-up time is mostly imports (benchmarks/RESULTS.md, issue 22): none of these is needed to answer."""
    imported = {line.split("|")[-1].strip() for line in folder_runs[1].stderr.splitlines()
                if line.startswith("import time:")}
    assert "img2prompt.decode" in imported and "torch" in imported  # the listing works
    heavy = {"sentence_transformers", "sklearn", "torchvision", "torch._dynamo", "transformers.modeling_utils",
             "matplotlib", "open_clip", "timm", "scipy"}
    assert not heavy & imported


@pytest.fixture(scope="module")
def json_answer(setup) -> dict:
    """``interrogate IMAGE --json``: one image's answer line."""
    bank, checkpoint, images, config = setup
    run = interrogate(str(images / "im0.png"), "--model", str(checkpoint), "--bank", str(bank), "--json",
                      "-c", str(config))
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout)


def test_json_lines_carry_the_prompt_its_cosine_the_nearest_prompts_and_timings(setup, json_answer):
    _, _, images, _ = setup
    answer = dict(json_answer)
    assert set(answer) == set(Answer.model_fields) and Answer.model_validate(answer).image == str(images / "im0.png")
    assert len(answer["nearest"]) == 5 and len(answer["embedding"]) == 384 and answer["timings"]["embed_ms"] > 0
    assert answer["nearest"][0]["prompt"] in BANK and -1 <= answer["cosine"] <= 1 and answer["capped"] is False


def test_the_python_api_gives_the_cli_answer(setup, folder_runs):
    bank, checkpoint, images, _ = setup
    cli = dict(line.split("\t") for line in folder_runs[0].stdout.strip().splitlines())[str(images / "im1.png")]
    interrogator = Interrogator(checkpoint, bank, mode="fast",
                                decode=DecodeConfig(modifiers=["mediums"], cache_dir=str(bank.parent / "cache")))
    from PIL import Image

    assert interrogator.prompt(images / "im1.png") == cli
    assert interrogator.prompt(Image.open(images / "im1.png")) == cli
    assert interrogator.embed([images / "im0.png", images / "im1.png"]).shape == (2, 384)


def test_python_cli_json_and_http_give_one_image_the_same_answer(setup, json_answer):
    """One answer shape: the Python API's Answer, an ``interrogate --json`` line and ``POST /v1/predict``'s body
    hold the same fields with the same values (the image's name, the timings and a server's model name without
    folders are the surface's own)."""
    from img2prompt.serve import create_app
    from serve_fakes import local_client

    bank, checkpoint, images, _ = setup
    cli = json_answer
    interrogator = Interrogator(checkpoint, bank, decode=DecodeConfig(modifiers=["mediums"],
                                                                      cache_dir=str(bank.parent / "cache")))
    python = interrogator.interrogate([images / "im0.png"])[0].model_dump()
    with local_client(create_app(interrogator.model, interrogator.decoder)) as client:
        response = client.post("/v1/predict", files={"file": ("im0.png", (images / "im0.png").read_bytes())})
    assert response.status_code == 200, response.text
    http = response.json()
    assert set(cli) == set(python) == set(http) == set(Answer.model_fields)
    for answer in (python, http):
        assert answer.pop("embedding") == cli["embedding"]  # the same floats: the cosines below are compared exactly
        for field in ("prompt", "cosine", "mode", "capped", "nearest", "warning"):
            assert answer[field] == cli[field], field
    assert (cli["image"], python["image"], http["image"]) == (str(images / "im0.png"),) * 2 + ("im0.png",)
    assert python["model"] == cli["model"] and http["model"] == Path(cli["model"]).name  # a server hides folders


def test_missing_bank_and_unknown_mode_are_one_line_errors(setup):
    bank, checkpoint, images, _ = setup
    run = interrogate(str(images), "--model", str(checkpoint))
    assert run.returncode == 1 and run.stderr.startswith(
        f"error: {checkpoint}: this model carries no prompt bank: give one (--bank PROMPTS.parquet;")
    run = interrogate(str(images), "--model", str(checkpoint), "--bank", str(bank), "--mode", "slow")
    assert run.returncode == 1 and run.stderr.strip() == (
        "error: Invalid value for '--mode': Value error, 'slow' is not one of 'fast', 'best'. (got slow)")
