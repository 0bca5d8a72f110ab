"""The Hub, offline: a generated model card, a staged push, an upload through HfApi (recorded, not sent),
and ``hf-hub:ORG/NAME[@REVISION]`` loading a checkpoint from the Hugging Face cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from img2prompt.cli import app
from img2prompt.errors import Img2PromptError
from img2prompt.models.checkpoint import Checkpoint
from img2prompt.models.load import load_model
from img2prompt.models.regressor import ModelConfig, Regressor
from img2prompt.push import model_card, push
from test_predict import noise_image

REVISION = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = Regressor(ModelConfig(backbone="efficientnet_lite0", pretrained=False, tiny=True, fc_dim=64))
    metrics = {"val_mean_cosine": 0.62, "baseline_mean_cosine": 0.57, "val_count": 55, "step": 70,
               "val_per_source": {"scenes": 0.62}}
    return model.save_pretrained(tmp_path_factory.mktemp("ckpt") / "lite0", metrics=metrics,
                                 train_config={"data": {"shards": ["runs/quickstart/shards"]},
                                               "optim": {"epochs": 5, "lr": 0.002}})


def test_the_card_says_what_the_checkpoint_is_and_that_scenes_models_are_not_for_real_images(checkpoint):
    card = model_card(Checkpoint.read(checkpoint), "me/lite0")
    assert card.startswith("---\nlibrary_name: img2prompt\n")
    for expected in ("`efficientnet_lite0`", "0.6200** (+0.0500 over the constant-mean baseline 0.5700) on 55",
                     "not useful on real images", "hf-hub:me/lite0", "runs/quickstart/shards", "Intended use"):
        assert expected in card, expected


def test_a_dry_run_stages_the_checkpoint_and_its_card(checkpoint, tmp_path):
    result = CliRunner().invoke(app, ["push", str(checkpoint), "me/lite0", "--dry-run", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "README.md", "config.json", "config.yaml", "metrics.json", "model.safetensors"]


def test_push_creates_the_repo_and_uploads_the_staged_folder(checkpoint, monkeypatch):
    calls = []

    class RecordingApi:
        def __init__(self, token=None):
            calls.append(("init", token))

        def create_repo(self, repo_id, private, exist_ok):
            calls.append(("create", repo_id, private, exist_ok))
            return f"https://huggingface.co/{repo_id}"

        def upload_folder(self, folder_path, repo_id, commit_message):
            calls.append(("upload", repo_id, sorted(p.name for p in Path(folder_path).iterdir())))

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingApi)
    assert push(checkpoint, "me/lite0", private=True) == "https://huggingface.co/me/lite0"
    assert calls[1] == ("create", "me/lite0", True, True)
    assert calls[2] == ("upload", "me/lite0", ["README.md", "config.json", "config.yaml", "metrics.json",
                                                "model.safetensors"])


def test_a_broken_checkpoint_or_repo_id_fails_before_any_upload(checkpoint, tmp_path):
    with pytest.raises(Img2PromptError, match="not ORG/NAME"):
        push(checkpoint, "no-org")
    with pytest.raises(Img2PromptError, match="missing: not found"):
        push(tmp_path / "missing", "me/x", dry_run=tmp_path / "out")


def fake_hub_cache(root: Path, repo: str, files: Path) -> None:
    """The Hugging Face cache layout (models--ORG--NAME/refs/main, snapshots/<commit>/...), as a download
    leaves it, so ``snapshot_download`` resolves the repo offline."""
    base = root / f"models--{repo.replace('/', '--')}"
    (base / "refs").mkdir(parents=True)
    (base / "refs" / "main").write_text(REVISION)
    snapshot = base / "snapshots" / REVISION
    snapshot.mkdir(parents=True)
    for path in files.iterdir():
        (snapshot / path.name).write_bytes(path.read_bytes())


def test_hf_hub_specs_load_a_pushed_checkpoint_from_the_cache(checkpoint, tmp_path, monkeypatch):
    push(checkpoint, "me/lite0", dry_run=tmp_path / "staged")
    fake_hub_cache(tmp_path / "hub", "me/lite0", tmp_path / "staged")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    local = Regressor.from_pretrained(checkpoint).embed([noise_image(0)])
    for spec in ("hf-hub:me/lite0", f"hf-hub:me/lite0@{REVISION}"):
        model = load_model(spec)
        assert model.name == spec and np.allclose(model.embed([noise_image(0)]), local, atol=1e-6)
    with pytest.raises(Img2PromptError, match="hf-hub:me/other: cannot download the checkpoint"):
        load_model("hf-hub:me/other")
    with pytest.raises(Img2PromptError, match="hf-hub:me: a hub checkpoint is hf-hub:ORG/NAME"):
        load_model("hf-hub:me")
    assert json.loads((tmp_path / "staged" / "metrics.json").read_text())["val_count"] == 55
