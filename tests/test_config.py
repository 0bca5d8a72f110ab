"""Configs: one reader for every verb, strict sections and keys, base: includes, packaged configs, overrides; each
verb validates (and imports) only the sections it runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from img2prompt.config import apply_overrides, packaged_configs, resolve_config_path, write_resolved
from img2prompt.curate.config import CurateConfig
from img2prompt.curate.write_prompts import WritePromptsConfig
from img2prompt.decode import DecodeConfig
from img2prompt.download.catalog import DownloadConfig
from img2prompt.errors import Img2PromptError
from img2prompt.generate.run import GenerateConfig
from img2prompt.recipe.config import RecipeConfig
from img2prompt.sections import SECTIONS, load_section, read_config
from img2prompt.serve.settings import ServeConfig
from img2prompt.train.config import TrainConfig

MODELS = {"download": DownloadConfig, "write_prompts": WritePromptsConfig, "curate": CurateConfig,
          "generate": GenerateConfig, "train": TrainConfig, "decode": DecodeConfig, "serve": ServeConfig,
          "recipe": RecipeConfig}

REPO = Path(__file__).resolve().parents[1]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_every_section_has_its_model():
    assert tuple(MODELS) == SECTIONS


def test_defaults_without_a_file():
    assert load_section(None, "serve", ServeConfig) == ServeConfig()


def test_file_and_overrides(tmp_path):
    path = write(tmp_path / "c.yaml", "train:\n  seed: 3\n  optim: {lr: 0.01}\nserve: {port: 1}\n")
    config = read_config(path, ["train.optim.lr=1e-4", "train.optim.betas=[0.8, 0.9]", "serve.port=2"])
    train = config.section("train", TrainConfig)
    assert train.seed == 3
    assert train.optim.lr == pytest.approx(1e-4)
    assert train.optim.betas == (0.8, 0.9)
    assert config.section("serve", ServeConfig).port == 2


def test_a_verb_validates_and_imports_only_the_sections_it_runs(tmp_path):
    """A serve config that also holds a (broken) train: section serves: the trainer is neither validated nor
    imported. A misspelled section is still refused (every verb knows every section's name)."""
    path = write(tmp_path / "c.yaml", "serve: {port: 7}\ntrain: {optim: {lr: not-a-number}}\n")
    script = ("import sys; from img2prompt.sections import load_section; from img2prompt.serve.settings import "
              f"ServeConfig; print(load_section({str(path)!r}, 'serve', ServeConfig).port, "
              "'img2prompt.train.config' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["7", "False"]
    with pytest.raises(Img2PromptError, match=r"train\.optim\.lr: Input should be a valid number"):
        load_section(path, "train", TrainConfig)


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
        load_section(path, "train", TrainConfig, overrides)
    assert "\n" not in str(info.value)


def test_a_section_a_verb_needs_but_the_file_lacks_is_a_one_line_error(tmp_path):
    config = read_config(write(tmp_path / "c.yaml", "serve: {port: 1}\n"))
    with pytest.raises(Img2PromptError, match=r"curate\.sources: Field required"):
        config.section("curate", CurateConfig)


def test_missing_file(tmp_path):
    with pytest.raises(Img2PromptError, match="config file not found"):
        read_config(tmp_path / "nope.yaml")


def test_base_files_are_merged_under_the_including_file(tmp_path):
    write(tmp_path / "a.yaml", "train:\n  seed: 1\n  log_every: 7\n  optim: {lr: 0.5, epochs: 2}\n"
                               "  data: {shards: [x, y]}\n")
    write(tmp_path / "b.yaml", "base: a.yaml\ntrain:\n  seed: 2\n")
    child = write(tmp_path / "sub" / "c.yaml",
                  "base: [../b.yaml]\ntrain:\n  optim: {lr: 0.25}\n  data: {shards: [z]}\n")
    config = load_section(child, "train", TrainConfig)
    assert (config.seed, config.log_every) == (2, 7)
    assert (config.optim.lr, config.optim.epochs) == (0.25, 2)  # mappings merge key by key
    assert config.data.shards == ["z"]  # lists replace


def test_a_users_config_can_start_from_a_shipped_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mine = write(tmp_path / "mine" / "vit.yaml", "base: configs/train/vit_l_14_336_stage1.yaml\n"
                                                 "train:\n  data: {shards: [my/shards]}\n")
    config = load_section(mine, "train", TrainConfig)
    assert config.model.backbone == "vit_l_14_336" and config.data.shards == ["my/shards"]


def test_a_base_cycle_is_an_error(tmp_path):
    write(tmp_path / "a.yaml", "base: b.yaml\n")
    write(tmp_path / "b.yaml", "base: a.yaml\n")
    with pytest.raises(Img2PromptError, match="base: includes itself"):
        read_config(tmp_path / "a.yaml")


def test_packaged_configs_resolve_without_a_checkout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ folder here
    path = resolve_config_path("configs/train/vit_l_14_336_stage2.yaml")
    assert path == packaged_configs() / "train" / "vit_l_14_336_stage2.yaml"
    config = load_section("configs/train/vit_l_14_336_stage2.yaml", "train", TrainConfig)
    assert config.model.backbone == "vit_l_14_336"


def test_the_checkout_configs_folder_is_the_packaged_one():
    assert (REPO / "configs").resolve() == packaged_configs().resolve()


STAGE_CONFIGS = sorted(p for p in packaged_configs().rglob("*.yaml") if p.parent.name != "accelerate")


@pytest.mark.parametrize("path", STAGE_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_shipped_stage_config_validates(path: Path):
    """(configs/accelerate/ holds accelerate's launcher configs, which accelerate reads.)"""
    config = read_config(path)
    assert config.data
    for name in config.data:
        config.section(name, MODELS[name])


def test_write_resolved_round_trips(tmp_path):
    config = load_section(None, "train", TrainConfig, ["train.seed=5"])
    path = write_resolved(config, "train", tmp_path / "run")
    assert yaml.safe_load(path.read_text())["train"]["seed"] == 5
    assert load_section(path, "train", TrainConfig) == config


def test_overrides_index_lists():
    data = {"curate": {"sources": [{"count": 1}, {"count": 2}]}}
    apply_overrides(data, ["curate.sources.1.count=5"])
    assert data["curate"]["sources"] == [{"count": 1}, {"count": 5}]
    with pytest.raises(Img2PromptError, match="'2' is not an index of a 2-item list"):
        apply_overrides(data, ["curate.sources.2.count=5"])


def test_override_values_are_yaml():
    data = apply_overrides({}, ["a.b=true", "a.c=none_text", "a.d=", "e=3"])
    assert data == {"a": {"b": True, "c": "none_text", "d": ""}, "e": 3}
