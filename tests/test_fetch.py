"""``img2prompt fetch`` and the lines a model that cannot be had says: through the real huggingface_hub and open_clip
clients against the local hub on 127.0.0.1, with a tiny open_clip model registered under a pretrained tag whose
weights the local hub serves."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import numpy as np
import open_clip
import pandas as pd
import pytest
import torch

from hub_server import LocalHosts, use_hub
from img2prompt.decode import DecodeConfig
from img2prompt.errors import Img2PromptError
from img2prompt.fetch import fetch
from img2prompt.files import human_size
from img2prompt.models.load import load_model
from img2prompt.prompt_table import prompt_id, write_table
from img2prompt.push import push
from test_decode import BANK
from test_predict import noise_image

TAG = "tiny_tag"
WEIGHTS_REPO = "me/tiny-clip"
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)  # not the model config's: the tag's own must be applied


@pytest.fixture(scope="module")
def hosts(hosts, tiny_clip):
    """The local hub, serving the tiny model's weights under the real ViT-B/32 tag's repository."""
    _, weights = tiny_clip
    hosts.add_repo(WEIGHTS_REPO, {"open_clip_pytorch_model.bin": weights.read_bytes()}, repo_type="model")
    return hosts


@pytest.fixture
def tagged(tiny_clip, monkeypatch) -> str:
    """The tiny model with a pretrained tag served by the local hub, as open_clip lists its own tags."""
    name, _ = tiny_clip
    config = {"url": "", "hf_hub": f"{WEIGHTS_REPO}/", "mean": MEAN, "std": STD, "interpolation": "bicubic",
              "resize_mode": "shortest"}
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, name, {TAG: config})
    return f"clip:{name}/{TAG}"


@pytest.fixture
def hub(hosts, monkeypatch, tmp_path) -> LocalHosts:
    use_hub(monkeypatch, hosts.url, tmp_path / "hub-cache")
    return hosts


@pytest.fixture(scope="module")
def bank(tmp_path_factory, text_embedder) -> Path:
    frame = pd.DataFrame({"prompt_id": [prompt_id(p) for p in BANK], "prompt": BANK, "source": "test",
                          "tier": "hq", "cluster": range(len(BANK)), "split": "train"})
    return write_table(frame, text_embedder.encode(BANK), tmp_path_factory.mktemp("bank") / "prompts.parquet")


def estimated(tiny_clip) -> str:
    return f"~{human_size(4 * sum(p.numel() for p in open_clip.create_model(tiny_clip[0]).parameters()))}"


def test_fetch_says_the_size_first_then_open_clip_downloads_and_the_model_loads_offline_as_its_tag_says(
        tagged, tiny_clip, hub, bank, monkeypatch):
    size = len(Path(tiny_clip[1]).read_bytes())
    said: list[str] = []
    fetch(tagged, say=said.append)
    assert said == [f"{tagged}  {WEIGHTS_REPO}/open_clip_pytorch_model.bin  {human_size(size)}",
                    f"to download: 1 of 1 files, {human_size(size)}", f"fetched {tagged}: everything it needs is in "
                                                                        "the Hugging Face cache"]
    fetched = [(method, path) for method, path, _ in hub.requests if WEIGHTS_REPO in path]
    assert ("GET", f"/{WEIGHTS_REPO}/resolve/main/open_clip_pytorch_model.bin") in fetched
    assert ("HEAD", f"/{WEIGHTS_REPO}/resolve/main/open_clip_model.safetensors") in fetched  # open_clip's preference
    # what open_clip builds when it loads the tag itself (online): the tag's normalisation, the same weights
    reference, _, preprocess = open_clip.create_model_and_transforms(tiny_clip[0], pretrained=TAG)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    model = load_model(f"{tagged}?k=3", bank=bank)
    assert model.preprocess.transforms[-1].mean == MEAN
    picture = noise_image(0, 48)
    with torch.inference_mode():
        ours = model.model.encode_image(model.preprocess(picture)[None])
        theirs = reference.encode_image(preprocess(picture)[None])
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), atol=1e-6)
    said.clear()
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    fetch(tagged, say=said.append)
    assert said[0].endswith("(cached)") and said[1] == "to download: 0 of 1 files, 0 B"


def test_missing_weights_offline_are_one_line_with_the_fetch_command_and_the_size(tagged, tiny_clip, hub, bank,
                                                                                   monkeypatch, capfd, caplog):
    size = estimated(tiny_clip)
    caplog.clear()
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    with pytest.raises(Img2PromptError) as missing:
        load_model(tagged, bank=bank)
    assert str(missing.value) == (
        f"{tagged}?bank={bank}: missing the open_clip weights {WEIGHTS_REPO} ({size}): not in the "
        "Hugging Face cache, and offline mode is on (HF_HUB_OFFLINE=1): run "
        f"`img2prompt fetch {tagged}` on a machine that reaches the Hub, or unset HF_HUB_OFFLINE here")
    assert capfd.readouterr().err == "" and not caplog.records  # nothing but the one line
    with pytest.raises(Img2PromptError, match="fetch needs the Hub"):
        fetch(tagged)


def test_an_unreachable_hub_is_one_line_at_once_without_retries(tagged, tiny_clip, bank, monkeypatch, tmp_path,
                                                                capfd, caplog):
    with socket.socket() as probe:  # a port nothing listens on: every connection is refused
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    use_hub(monkeypatch, closed, tmp_path / "cache")
    size = estimated(tiny_clip)
    caplog.set_level(logging.WARNING)
    caplog.clear()
    with pytest.raises(Img2PromptError) as unreachable:
        load_model(tagged, bank=bank)
    assert str(unreachable.value).startswith(
        f"{tagged}?bank={bank}: missing the open_clip weights {WEIGHTS_REPO} ({size}): not in the "
        "Hugging Face cache, and the Hub did not answer (ConnectError")
    assert str(unreachable.value).endswith(f"offline mode is off): run `img2prompt fetch {tagged}` once the Hub is "
                                           "reachable")
    assert not caplog.records and capfd.readouterr().err == ""  # each retry would have logged a warning


def test_a_tag_or_model_that_does_not_exist_lists_the_valid_ones(tiny_clip, bank, tagged):
    name, _ = tiny_clip
    with pytest.raises(Img2PromptError, match=rf"{name} has no pretrained tag 'tiny_tagg' \(its tags: {TAG}; or give "
                                              "a weights file\\)"):
        load_model(f"clip:{name}/tiny_tagg", bank=bank)
    with pytest.raises(Img2PromptError, match="open_clip has no model 'ViT-H-14x' \\(did you mean 'ViT-H-14'"):
        load_model("clip:ViT-H-14x/laion2b_s32b_b79k", bank=bank)


def test_fetch_gets_a_pushed_model_and_its_bank_which_then_interrogate_offline(tmp_path, hub, bank, monkeypatch,
                                                                               text_embedder):
    from img2prompt import Interrogator
    from img2prompt.models.regressor import ModelConfig, Regressor

    torch.manual_seed(0)
    checkpoint = Regressor(ModelConfig(backbone="efficientnet_lite0", pretrained=False, tiny=True)).save_pretrained(
        tmp_path / "ckpt")
    decode = DecodeConfig(modifiers=["mediums"], cache_dir=str(tmp_path / "cache"))
    push(checkpoint, "me/fetched", bank=bank, decode=decode)
    use_hub(monkeypatch, hub.url, tmp_path / "fresh-cache")
    said: list[str] = []
    fetch("hf-hub:me/fetched", say=said.append)
    repo = hub.state.repos[("model", "me/fetched")]
    listed = {line.split("  ")[1]: line.split("  ")[2] for line in said[:-2]}
    assert listed == {f"me/fetched/{path}": human_size(len(data)) for path, data in repo.files.items()}
    assert said[-2] == f"to download: {len(repo.files)} of {len(repo.files)} files, " \
                       f"{human_size(sum(map(len, repo.files.values())))}"
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    answer = Interrogator("hf-hub:me/fetched", decode=decode).interrogate([noise_image(3)])[0]
    assert answer.prompt and answer.model == "hf-hub:me/fetched"
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    downloads = [path for method, path, _ in hub.requests if method == "GET" and "/resolve/" in path]
    fetch("hf-hub:me/fetched", say=said.append)
    assert [path for method, path, _ in hub.requests if method == "GET" and "/resolve/" in path] == downloads
    assert said[-2].startswith("to download: 0 of")


def test_fetch_walks_an_ensemble_and_skips_what_is_on_disk(tagged, hub, bank, tmp_path, tiny_clip):
    from img2prompt.models.ensemble import EnsembleSpec, Member, write_spec

    spec = write_spec(EnsembleSpec(members=[Member(model=f"{tagged}?bank={bank}", weight=0.5),
                                            Member(model=f"mean:{bank}", weight=0.5)]), tmp_path / "ensemble.yaml")
    said: list[str] = []
    fetch(spec, say=said.append)
    assert said[0].startswith(f"{tagged}  {WEIGHTS_REPO}/open_clip_pytorch_model.bin") and len(said) == 3
    fetch(f"mean:{bank}", say=said.append)
    assert said[-1] == f"mean:{bank}: nothing to fetch (everything it needs is on disk)"
    with pytest.raises(Img2PromptError, match=r"none\.yaml: not found"):
        fetch(tmp_path / "none.yaml")
