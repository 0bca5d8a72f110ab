"""The zero-shot kind ``clip:MODEL/PRETRAINED``: offline through the same open_clip calls, with a tiny model
registered as an open_clip config and its random weights saved as a pretrained file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import open_clip
import pandas as pd
import pytest
import torch
import yaml

from img2prompt.errors import Img2PromptError
from img2prompt.models.load import load_model
from img2prompt.predict import run_predict
from img2prompt.predictions import read_predictions
from img2prompt.prompt_table import prompt_id, write_table
from img2prompt.space import normalise
from test_predict import noise_image

PROMPTS = [f"a {colour} {thing} on a table" for colour in ("red", "green", "blue", "white")
           for thing in ("cup", "cat", "book", "lamp", "shoe")]


@pytest.fixture(scope="module")
def bank(tmp_path_factory) -> Path:
    frame = pd.DataFrame({"prompt_id": [prompt_id(p) for p in PROMPTS], "prompt": PROMPTS, "source": "test",
                          "tier": "hq", "cluster": range(len(PROMPTS)),
                          "split": ["test" if i % 5 == 4 else "train" for i in range(len(PROMPTS))]})
    targets = normalise(np.random.default_rng(3).standard_normal((len(PROMPTS), 384)))
    return write_table(frame, targets, tmp_path_factory.mktemp("bank") / "bank.parquet")


def test_the_blend_of_the_top_k_bank_prompts_by_clip_similarity(tiny_clip, bank):
    name, weights = tiny_clip
    model = load_model(f"clip:{name}/{weights}?k=3&temperature=0.05", bank=bank)
    assert model.name == f"clip:{name}/{weights}?k=3&temperature=0.05&bank={bank}"
    images = [noise_image(i, size=48) for i in range(3)]
    out = model.embed(images)
    assert out.shape == (3, 384) and np.allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)
    # The same thing by hand, through open_clip's public calls.
    reference, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=str(weights))
    tokenizer = open_clip.get_tokenizer(name)
    train = [p for i, p in enumerate(PROMPTS) if i % 5 != 4]
    from img2prompt.prompt_table import read_table

    frame, targets = read_table(bank)
    targets = targets[(frame.split == "train").to_numpy()]
    with torch.inference_mode():
        text = normalise(reference.encode_text(tokenizer(train)).numpy())
        image = normalise(reference.encode_image(torch.stack([preprocess(im) for im in images])).numpy())
    for row, vector in zip(image @ text.T, out, strict=True):
        top = np.argsort(-row)[:3]
        weights_ = np.exp((row[top] - row[top].max()) / 0.05)
        expected = normalise((weights_ / weights_.sum()) @ targets[top])
        assert np.allclose(vector, expected, atol=1e-4)


def test_only_train_prompts_are_in_the_bank_and_their_clip_text_is_cached_beside_it(tiny_clip, bank, monkeypatch):
    name, weights = tiny_clip
    model = load_model(f"clip:{name}/{weights}", bank=bank)
    assert len(model.prompts) == 16 and not set(model.prompts) & {p for i, p in enumerate(PROMPTS) if i % 5 == 4}
    cached = list((bank.parent / "bank.parquet.clip").glob(f"{name}__weights__*.npy"))
    assert len(cached) == 1 and np.load(cached[0]).shape == (16, 32)

    def no_text(*_args, **_kwargs):
        raise AssertionError("the bank's CLIP text must come from the cache")

    monkeypatch.setattr(open_clip.CLIP, "encode_text", no_text)
    again = load_model(f"clip:{name}/{weights}", bank=bank)
    assert np.allclose(again.embed([noise_image(5, 48)]), model.embed([noise_image(5, 48)]), atol=1e-6)


def test_a_zero_shot_model_predicts_and_joins_an_ensemble_like_any_other(tiny_clip, bank, tmp_path):
    name, weights = tiny_clip
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        noise_image(i, 48).save(folder / f"im{i}.png")
    ids, _, _ = run_predict(f"clip:{name}/{weights}?bank={bank}", [folder], out=tmp_path / "p.parquet")
    frame, _ = read_predictions(tmp_path / "p.parquet")
    assert ids == ["im0", "im1", "im2"] and frame.model.iloc[0] == f"clip:{name}/{weights}?bank={bank}"
    spec = tmp_path / "ens" / "ensemble.yaml"
    from img2prompt.models.ensemble import EnsembleSpec, Member, write_spec

    write_spec(EnsembleSpec(members=[Member(model=frame.model.iloc[0], weight=0.5),
                                     Member(model=f"mean:{bank}", weight=0.5)]), spec)
    stored_member = yaml.safe_load(spec.read_text())["ensemble"]["members"][0]["model"]
    assert stored_member.endswith(f"?bank={os.path.relpath(bank, spec.parent)}")  # portable, like every path
    blended = load_model(spec).embed([noise_image(0, 48)])
    assert blended.shape == (1, 384)


@pytest.mark.parametrize(("spec", "message"), [
    ("clip:ViT-B-32", "a zero-shot model is clip:MODEL/PRETRAINED"),
    ("clip:ViT-B-32/openai", "a zero-shot model needs a prompt bank"),
    ("clip:ViT-B-32/openai?bank=b.parquet&top=3", "unknown parameter 'top'"),
    ("clip:ViT-B-32/openai?bank=b.parquet&k=many", "k must be an integer"),
])
def test_bad_zero_shot_specs_are_one_line_errors(spec, message):
    with pytest.raises(Img2PromptError, match=message) as info:
        load_model(spec)
    assert "\n" not in str(info.value)


def test_weights_that_cannot_be_had_offline_are_a_one_line_error(bank):
    # the size is the real ViT-B/32's: 151,277,313 float32 parameters (test_fetch.py: the whole line)
    with pytest.raises(Img2PromptError, match=r"missing the open_clip weights timm/vit_base_patch32_clip_224\.openai "
                                              r"\(~605\.1 MB\).*`img2prompt fetch clip:ViT-B-32/openai`") as info:
        load_model("clip:ViT-B-32/openai", bank=bank)
    assert "\n" not in str(info.value)
