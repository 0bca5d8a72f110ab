"""Configs: one loader for every verb, strict sections and keys, base: includes, packaged configs, overrides."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from img2prompt.config import (
    SECTIONS,
    apply_overrides,
    load_config,
    packaged_configs,
    resolve_config_path,
    section_model,
    write_resolved,
)
from img2prompt.errors import Img2PromptError

REPO = Path(__file__).resolve().parents[1]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_without_a_file():
    assert load_config().serve == section_model("serve")()


def test_file_and_overrides(tmp_path):
    path = write(tmp_path / "c.yaml", "train:\n  seed: 3\n  optim: {lr: 0.01}\nserve: {port: 1}\n")
    config = load_config(path, ["train.optim.lr=1e-4", "train.optim.betas=[0.8, 0.9]", "serve.port=2"])
    assert config.train.seed == 3
    assert config.train.optim.lr == pytest.approx(1e-4)
    assert config.train.optim.betas == (0.8, 0.9)
    assert config.serve.port == 2


@pytest.mark.parametrize(
    ("text", "overrides", "message"),
    [
        ("train:\n  sed: 3\n", [], "train.sed: Extra inputs are not permitted (did you mean 'seed'?)"),
        ("train:\n  optim: {lrr: 1}\n", [], "train.optim.lrr: Extra inputs are not permitted (did you mean 'lr'?)"),
        ("train:\n  seed: many\n", [], "train.seed: Input should be a valid integer"),
        ("trian:\n  seed: 3\n", [], "unknown section 'trian' (did you mean 'train'?)"),
        ("", ["serv.port=1"], "unknown section 'serv' (did you mean 'serve'?)"),
        ("train: [1, 2\n", [], "invalid YAML"),
        ("- 1\n", [], "must be a mapping"),
        ("", ["train.optim.lr"], "expected KEY=VALUE"),
        ("train:\n  seed: 3\n", ["train.seed.x=1"], "'seed' is not a section"),
        ("base: 3\n", [], "base: must be a path or a list of paths"),
        ("base: missing.yaml\n", [], "missing.yaml: config file not found"),
    ],
)
def test_bad_configs_give_one_line_errors(tmp_path, text, overrides, message):
    path = write(tmp_path / "bad.yaml", text)
    with pytest.raises(Img2PromptError, match=re.escape(message)) as info:
        load_config(path, overrides)
    assert "\n" not in str(info.value)


def test_a_section_a_verb_needs_but_the_file_lacks_is_a_one_line_error(tmp_path):
    config = load_config(write(tmp_path / "c.yaml", "serve: {port: 1}\n"))
    with pytest.raises(Img2PromptError, match=r"curate\.sources: Field required"):
        _ = config.curate


def test_missing_file(tmp_path):
    with pytest.raises(Img2PromptError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_base_files_are_merged_under_the_including_file(tmp_path):
    write(tmp_path / "a.yaml", "train:\n  seed: 1\n  log_every: 7\n  optim: {lr: 0.5, epochs: 2}\n"
                               "  data: {shards: [x, y]}\n")
    write(tmp_path / "b.yaml", "base: a.yaml\ntrain:\n  seed: 2\n")
    child = write(tmp_path / "sub" / "c.yaml",
                  "base: [../b.yaml]\ntrain:\n  optim: {lr: 0.25}\n  data: {shards: [z]}\n")
    config = load_config(child).train
    assert (config.seed, config.log_every) == (2, 7)
    assert (config.optim.lr, config.optim.epochs) == (0.25, 2)  # mappings merge key by key
    assert config.data.shards == ["z"]  # lists replace


def test_a_users_config_can_start_from_a_shipped_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mine = write(tmp_path / "mine" / "vit.yaml", "base: configs/train/vit_l_14_336_stage1.yaml\n"
                                                 "train:\n  data: {shards: [my/shards]}\n")
    config = load_config(mine).train
    assert config.model.backbone == "vit_l_14_336" and config.data.shards == ["my/shards"]


def test_a_base_cycle_is_an_error(tmp_path):
    write(tmp_path / "a.yaml", "base: b.yaml\n")
    write(tmp_path / "b.yaml", "base: a.yaml\n")
    with pytest.raises(Img2PromptError, match="base: includes itself"):
        load_config(tmp_path / "a.yaml")


def test_packaged_configs_resolve_without_a_checkout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ folder here
    path = resolve_config_path("configs/train/vit_l_14_336_stage2.yaml")
    assert path == packaged_configs() / "train" / "vit_l_14_336_stage2.yaml"
    assert load_config("configs/train/vit_l_14_336_stage2.yaml").train.model.backbone == "vit_l_14_336"


def test_the_checkout_configs_folder_is_the_packaged_one():
    assert (REPO / "configs").resolve() == packaged_configs().resolve()


STAGE_CONFIGS = sorted(p for p in packaged_configs().rglob("*.yaml") if p.parent.name != "accelerate")


@pytest.mark.parametrize("path", STAGE_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_shipped_stage_config_validates(path: Path):
    """(configs/accelerate/ holds accelerate's launcher configs, which accelerate reads.)"""
    config = load_config(path)
    assert config._sections and set(config._sections) <= set(SECTIONS)


def test_write_resolved_round_trips(tmp_path):
    config = load_config(None, ["train.seed=5"]).train
    path = write_resolved(config, "train", tmp_path / "run")
    assert yaml.safe_load(path.read_text())["train"]["seed"] == 5
    assert load_config(path).train == config


def test_overrides_index_lists():
    data = {"curate": {"sources": [{"count": 1}, {"count": 2}]}}
    apply_overrides(data, ["curate.sources.1.count=5"])
    assert data["curate"]["sources"] == [{"count": 1}, {"count": 5}]
    with pytest.raises(Img2PromptError, match="'2' is not an index of a 2-item list"):
        apply_overrides(data, ["curate.sources.2.count=5"])


def test_override_values_are_yaml():
    data = apply_overrides({}, ["a.b=true", "a.c=none_text", "a.d=", "e=3"])
    assert data == {"a": {"b": True, "c": "none_text", "d": ""}, "e": 3}
