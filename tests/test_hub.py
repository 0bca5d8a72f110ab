"""A model that stands alone on the Hub: ``push`` uploads the checkpoint, its prompt bank (or a reference to a bank
on the Hub) and its phrase dictionary with a generated card, through the real huggingface_hub client to the local
hub on 127.0.0.1; ``hf-hub:ORG/NAME`` then interrogates with no bank, from Python and the CLI, and offline from the
cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from hub_server import COMMIT, LocalHosts, use_hub
from img2prompt import Interrogator
from img2prompt.cli import app
from img2prompt.decode import DecodeConfig
from img2prompt.dictionary import read_dictionary
from img2prompt.errors import Img2PromptError
from img2prompt.models.checkpoint import Checkpoint
from img2prompt.models.load import load_model
from img2prompt.models.regressor import ModelConfig, Regressor
from img2prompt.prompt_table import prompt_id, write_table
from img2prompt.push import model_card, push
from test_decode import BANK
from test_predict import noise_image

pytestmark = pytest.mark.filterwarnings("ignore::img2prompt.interrogate.SyntheticModelWarning")  # a scenes model
STAGED = ["README.md", "bank/prompts.dictionary.parquet", "bank/prompts.parquet", "config.json", "config.yaml",
          "metrics.json", "model.safetensors"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = Regressor(ModelConfig(backbone="efficientnet_lite0", pretrained=False, tiny=True, fc_dim=64))
    metrics = {"val_mean_cosine": 0.62, "baseline_mean_cosine": 0.57, "val_count": 55, "step": 70,
               "val_per_source": {"scenes": 0.62}}
    return model.save_pretrained(tmp_path_factory.mktemp("ckpt") / "lite0", metrics=metrics,
                                 train_config={"data": {"shards": ["runs/quickstart/shards"]},
                                               "optim": {"epochs": 5, "lr": 0.002}})


@pytest.fixture(scope="module")
def bank(tmp_path_factory, text_embedder) -> Path:
    frame = pd.DataFrame({"prompt_id": [prompt_id(p) for p in BANK], "prompt": BANK, "source": "test",
                          "tier": "hq", "cluster": range(len(BANK)), "split": "train"})
    return write_table(frame, text_embedder.encode(BANK), tmp_path_factory.mktemp("bank") / "prompts.parquet")


@pytest.fixture(scope="module")
def decode(tmp_path_factory) -> DecodeConfig:
    """A small dictionary (one term list), its phrase vectors cached for the module."""
    return DecodeConfig(modifiers=["mediums"], cache_dir=str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def hub(hosts, monkeypatch, tmp_path) -> LocalHosts:
    use_hub(monkeypatch, hosts.url, tmp_path / "hub-cache")
    return hosts


def files_of(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_the_card_says_what_the_checkpoint_is_how_to_install_and_that_scenes_models_are_not_for_real_images(
        checkpoint):
    card = model_card(Checkpoint.read(checkpoint), "me/lite0", "`bank/prompts.parquet`")
    assert card.startswith("---\nlibrary_name: img2prompt\n")
    for expected in ("`efficientnet_lite0`", "0.6200** (+0.0500 over the constant-mean baseline 0.5700) on 55",
                     "not useful on real images", "runs/quickstart/shards", "Intended use",
                     "img2prompt has no release on PyPI yet: install it from its source repository",
                     "\nimg2prompt interrogate photo.png --model hf-hub:me/lite0\n",  # no --bank: it carries one
                     'Interrogator("hf-hub:me/lite0").prompt("photo.png")'):
        assert expected in card, expected
    assert "pip install img2prompt\n" not in card  # no such package on PyPI
    bare = model_card(Checkpoint.read(checkpoint), "me/lite0")
    assert "--model hf-hub:me/lite0 --bank prompts.parquet" in bare and "carries no prompt bank" in bare


def test_a_dry_run_stages_a_model_that_interrogates_without_a_bank(checkpoint, bank, decode, tmp_path):
    staged = tmp_path / "out"
    push(checkpoint, "me/lite0", bank=bank, dry_run=staged, decode=decode)
    assert files_of(staged) == STAGED
    dictionary = read_dictionary(staged / "bank" / "prompts.dictionary.parquet")
    assert dictionary.settings["modifiers"] == ["mediums"] and "oil painting" in dictionary.phrases
    alone = Interrogator(staged, decode=decode).interrogate([noise_image(0)])[0]
    given = Interrogator(checkpoint, bank, decode=decode).interrogate([noise_image(0)])[0]
    assert alone.prompt == given.prompt and alone.nearest == given.nearest


def test_push_uploads_through_the_hub_client_and_the_model_interrogates_with_no_bank(checkpoint, bank, decode, hub,
                                                                                      tmp_path):
    url = push(checkpoint, "me/lite0", bank=bank, private=True, decode=decode)
    assert url == f"{hub.url}/me/lite0"
    repo = hub.state.repos[("model", "me/lite0")]
    assert sorted(repo.files) == STAGED and repo.files["model.safetensors"] == (
        checkpoint / "model.safetensors").read_bytes()
    assert any(method == "POST" and path == "/api/models/me/lite0/commit/main" for method, path, _ in hub.requests)
    local = Interrogator(checkpoint, bank, decode=decode).interrogate([noise_image(1)])[0]
    pulled = Interrogator("hf-hub:me/lite0", decode=decode).interrogate([noise_image(1)])[0]
    assert pulled.model == "hf-hub:me/lite0" and pulled.prompt == local.prompt
    np.testing.assert_allclose(pulled.embedding, local.embedding, atol=1e-6)
    noise_image(1).save(tmp_path / "im.png")
    run = CliRunner().invoke(app, ["interrogate", str(tmp_path / "im.png"), "--model", "hf-hub:me/lite0", "--set",
                                   "decode.modifiers=[mediums]", "--set", f"decode.cache_dir={decode.cache_dir}"])
    assert run.exit_code == 0, run.output
    assert run.stdout == f"{tmp_path / 'im.png'}\t{local.prompt}\n"


def test_a_bank_on_the_hub_is_referenced_not_copied(checkpoint, bank, decode, hub):
    hub.add_repo("me/bank", {"prompts.parquet": bank.read_bytes()})
    reference = f"hf://datasets/me/bank@{COMMIT}/prompts.parquet"
    push(checkpoint, "me/lite0-ref", bank=reference, decode=decode)
    repo = hub.state.repos[("model", "me/lite0-ref")]
    assert "bank/prompts.parquet" not in repo.files and "bank/prompts.dictionary.parquet" in repo.files
    assert json.loads(repo.files["bank.json"]) == {"repo": "me/bank", "revision": COMMIT, "path": "prompts.parquet",
                                                   "repo_type": "dataset"}
    assert reference in repo.files["README.md"].decode()
    answer = Interrogator("hf-hub:me/lite0-ref", decode=decode).interrogate([noise_image(2)])[0]
    assert answer.prompt == Interrogator(checkpoint, bank, decode=decode).interrogate([noise_image(2)])[0].prompt


def test_a_pulled_model_loads_offline_from_the_cache_and_a_missing_one_says_how_to_fetch_it(checkpoint, bank,
                                                                                            decode, hub, monkeypatch):
    push(checkpoint, "me/lite0-offline", bank=bank, decode=decode)
    online = load_model("hf-hub:me/lite0-offline")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    before = len(hub.requests)
    commit = hub.state.repos[("model", "me/lite0-offline")].commit
    for spec in ("hf-hub:me/lite0-offline", f"hf-hub:me/lite0-offline@{commit}"):
        model = load_model(spec)
        assert model.name == spec and np.allclose(model.embed([noise_image(0)]), online.embed([noise_image(0)]))
    assert len(hub.requests) == before  # nothing asked of the Hub
    with pytest.raises(Img2PromptError) as missing:
        load_model("hf-hub:me/other")
    assert str(missing.value) == (
        "hf-hub:me/other: missing the model: not in the Hugging Face cache, and offline mode is on (HF_HUB_OFFLINE=1): "
        "run `img2prompt fetch hf-hub:me/other` on a machine that reaches the Hub, or unset HF_HUB_OFFLINE here")
    with pytest.raises(Img2PromptError, match="hf-hub:me: a hub model is hf-hub:ORG/NAME"):
        load_model("hf-hub:me")


def test_a_broken_checkpoint_bank_or_repo_id_fails_before_any_upload(checkpoint, tmp_path, hub):
    with pytest.raises(Img2PromptError, match="not ORG/NAME"):
        push(checkpoint, "no-org")
    with pytest.raises(Img2PromptError, match="missing: not found"):
        push(tmp_path / "missing", "me/x", dry_run=tmp_path / "out")
    with pytest.raises(Img2PromptError, match=r"none\.parquet: prompt table not found"):
        push(checkpoint, "me/x", bank=tmp_path / "none.parquet")
    with pytest.raises(Img2PromptError, match="a bank on the Hub is hf://datasets/ORG/NAME@REVISION/PATH"):
        push(checkpoint, "me/x", bank="hf://datasets/me/bank/prompts.parquet")
    assert ("model", "me/x") not in hub.state.repos
