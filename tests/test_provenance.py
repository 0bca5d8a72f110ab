"""A model or a score made from the quickstart's synthetic scenes says so wherever a user meets it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from img2prompt import Interrogator
from img2prompt.cli import app
from img2prompt.decode import DecodeConfig
from img2prompt.interrogate import SyntheticModelWarning
from img2prompt.models.checkpoint import Checkpoint
from img2prompt.models.ensemble import Ensemble
from img2prompt.models.load import load_model
from img2prompt.models.regressor import ModelConfig, Regressor
from img2prompt.prompt_table import prompt_id, write_table
from img2prompt.provenance import MODEL_WARNING, synthetic
from img2prompt.space import normalise
from test_predict import noise_image

PROMPTS = ["a cat on a sofa", "two dogs in the snow", "a red car at night", "a bowl of fruit"]


@pytest.mark.parametrize(("sources", "expected"), [
    (["scenes"], True), (["scenes", "scenes"], True), (["scenes", "coco"], False), (["coco"], False), ([], False)])
def test_only_a_model_that_saw_nothing_but_scenes_is_synthetic(sources, expected):
    assert synthetic(sources) is expected


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("provenance")
    torch.manual_seed(0)
    model = Regressor(ModelConfig(backbone="efficientnet_lite0", pretrained=False, tiny=True))
    folders = {name: model.save_pretrained(root / name, metrics={"val_mean_cosine": 0.6, "val_per_source": per})
               for name, per in [("scenes", {"scenes": 0.6}), ("real", {"coco": 0.5, "diffusiondb": 0.4})]}
    folders["unknown"] = model.save_pretrained(root / "unknown")
    (folders["unknown"] / "metrics.json").write_text("{not json")
    return folders


def test_a_checkpoint_knows_the_sources_it_was_validated_on(checkpoints):
    assert Checkpoint.read(checkpoints["scenes"]).sources == ("scenes",)
    assert Checkpoint.read(checkpoints["real"]).sources == ("coco", "diffusiondb")
    assert Checkpoint.read(checkpoints["unknown"]).sources == ()
    assert load_model(checkpoints["scenes"], tta=True).sources == ("scenes",)


def test_an_ensemble_learned_from_every_source_of_its_members(checkpoints):
    members = [load_model(checkpoints[name]) for name in ("scenes", "real")]
    assert Ensemble(members, np.ones(2, np.float32)).sources == ("coco", "diffusiondb", "scenes")


def test_the_mean_baseline_learned_from_its_tables_training_rows(tmp_path, text_embedder):
    frame = pd.DataFrame({"prompt_id": [prompt_id(p) for p in PROMPTS], "prompt": PROMPTS,
                          "source": ["scenes", "scenes", "scenes", "coco"], "tier": "hq", "cluster": range(4),
                          "split": ["train", "train", "train", "test"]})
    table = write_table(frame, normalise(text_embedder.encode(PROMPTS)), tmp_path / "bank.parquet")
    assert load_model(f"mean:{table}").sources == ("scenes",)


def test_interrogate_warns_once_on_stderr_about_a_scenes_model(checkpoints, tmp_path, text_embedder):
    frame = pd.DataFrame({"prompt_id": [prompt_id(p) for p in PROMPTS], "prompt": PROMPTS, "source": "scenes",
                          "tier": "hq", "cluster": range(4), "split": "train"})
    bank = write_table(frame, text_embedder.encode(PROMPTS), tmp_path / "bank.parquet")
    noise_image(0, 48).save(tmp_path / "im.png")
    args = ["interrogate", str(tmp_path / "im.png"), "--bank", str(bank), "--set", "decode.modifiers=[mediums]",
            "--set", "decode.cache_dir=null"]
    warned = CliRunner().invoke(app, [*args, "--model", str(checkpoints["scenes"])])
    quiet = CliRunner().invoke(app, [*args, "--model", str(checkpoints["real"])])
    assert warned.exit_code == 0 and quiet.exit_code == 0, (warned.output, quiet.output)
    assert warned.stderr.splitlines() == [f"warning: This model {MODEL_WARNING}."]
    assert "warning" not in quiet.stderr
    assert warned.stdout.startswith(f"{tmp_path / 'im.png'}\t")
    # The same warning reaches the other surfaces: every JSON answer, and Python's warnings.
    answer = json.loads(CliRunner().invoke(app, [*args, "--model", str(checkpoints["scenes"]), "--json"]).stdout)
    assert answer["warning"] == f"This model {MODEL_WARNING}."
    with pytest.warns(SyntheticModelWarning, match="learned from synthetic emoji scenes"):
        Interrogator(checkpoints["scenes"], bank, decode=DecodeConfig(modifiers=["mediums"], cache_dir=None))
