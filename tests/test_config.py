"""Typed configs: YAML sections, strict keys, dotted overrides and the resolved copy next to outputs."""

from __future__ import annotations

import pytest
import yaml

from img2prompt.config import StrictModel, apply_overrides, load_section, write_resolved
from img2prompt.errors import Img2PromptError


class Optim(StrictModel):
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)


class Train(StrictModel):
    epochs: int = 1
    backbone: str = "efficientnet_lite0"
    optim: Optim = Optim()


def test_defaults_without_a_file():
    assert load_section(Train, "train") == Train()


def test_file_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: 3\n  optim: {lr: 0.01}\ncurate: {x: 1}\n")
    config = load_section(Train, "train", path, ["train.optim.lr=1e-4", "train.optim.betas=[0.8, 0.9]", "curate.x=2"])
    assert config.epochs == 3
    assert config.optim.lr == pytest.approx(1e-4)
    assert config.optim.betas == (0.8, 0.9)


@pytest.mark.parametrize(
    ("text", "overrides", "message"),
    [
        ("train:\n  epoch: 3\n", [], "train.epoch: Extra inputs are not permitted"),
        ("train:\n  epochs: many\n", [], "train.epochs: Input should be a valid integer"),
        ("train: [1, 2\n", [], "invalid YAML"),
        ("- 1\n", [], "must be a mapping"),
        ("", ["train.optim.lr"], "expected KEY=VALUE"),
        ("train:\n  epochs: 3\n", ["train.epochs.x=1"], "'epochs' is not a section"),
    ],
)
def test_bad_configs_give_one_line_errors(tmp_path, text, overrides, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(Img2PromptError, match=message) as info:
        load_section(Train, "train", path, overrides)
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(Img2PromptError, match="config file not found"):
        load_section(Train, "train", tmp_path / "nope.yaml")


def test_write_resolved_round_trips(tmp_path):
    config = Train(epochs=5)
    path = write_resolved(config, "train", tmp_path / "run")
    assert yaml.safe_load(path.read_text())["train"]["epochs"] == 5
    assert load_section(Train, "train", path) == config


def test_overrides_index_lists():
    data = {"curate": {"sources": [{"count": 1}, {"count": 2}]}}
    apply_overrides(data, ["curate.sources.1.count=5"])
    assert data["curate"]["sources"] == [{"count": 1}, {"count": 5}]
    with pytest.raises(Img2PromptError, match="'2' is not an index of a 2-item list"):
        apply_overrides(data, ["curate.sources.2.count=5"])


def test_override_values_are_yaml():
    data = apply_overrides({}, ["a.b=true", "a.c=none_text", "a.d=", "e=3"])
    assert data == {"a": {"b": True, "c": "none_text", "d": ""}, "e": 3}
