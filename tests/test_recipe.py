"""The dress rehearsal: the shipped recipe configs, in order, through every step to a validated submission.

Only sizes, device settings and the tiny twins are overridden (the list below), and the corpora are laid out
under data/ exactly as configs/curate/recipe.yaml expects them, in each publisher's format, so the day a
shipped config stops chaining (a path, a tier, a split, an init_from) this test fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import SHARED_DATA
from img2prompt.config import load_config
from img2prompt.errors import Img2PromptError
from img2prompt.recipe import plan

BACKBONES = ("vit_l_14_336", "convnext_xxlarge", "blip2_qformer")
SIZES = ["curate.splits.val=0.2", "curate.splits.test=0.2", "generate.size=16", "generate.diffusion.save_size=16",
         "generate.diffusion.steps=2", "train.model.image_size=56", "train.data.batch_size=4",
         "train.data.num_workers=0", "train.optim.epochs=1"]
DEVICE = ["curate.embedding.device=cpu", "generate.diffusion.dtype=fp32", "generate.diffusion.compile=false",
          "train.precision='no'"]
TINY = ["train.model.tiny=true", "train.model.pretrained=false"]  # + generate.diffusion.model=<tiny SD folder>


def write_corpora(root: Path) -> dict[str, int]:
    """Every source of configs/curate/recipe.yaml at its path, in its format, with scenes-grammar prompts."""
    from img2prompt.scene_grammar import random_prompts

    prompts = iter(random_prompts(400, seed=11))
    take = lambda n: [next(prompts) for _ in range(n)]  # noqa: E731
    files: dict[str, int] = {}

    def put(relative: str, text: str | None = None, frame: pd.DataFrame | None = None, rows: int = 0) -> None:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if frame is not None:
            frame.to_parquet(path)
        else:
            path.write_text(text or "", encoding="utf-8")
        files[relative] = rows

    put("data/diffusiondb/metadata.parquet", frame=pd.DataFrame({"prompt": take(24)}), rows=24)
    put("data/coco/annotations/captions_train2017.json",
        json.dumps({"annotations": [{"image_id": i, "caption": c} for i, c in enumerate(take(8))]}), rows=8)
    for split in ("train", "val"):
        put(f"data/vizwiz/annotations/{split}.json", json.dumps({"annotations": [
            {"caption": c, "is_precanned": False, "is_rejected": False} for c in take(4)]}), rows=4)
    put("data/vizwiz/annotations/test.json", json.dumps({"images": [{"file_name": "x.jpg"}]}))  # no captions
    put("data/localized_narratives/open_images_train_v6_captions.jsonl",
        "".join(json.dumps({"caption": c}) + "\n" for c in take(6)), rows=6)
    put("data/localized_narratives/ade20k_train_captions.jsonl",
        "".join(json.dumps({"caption": c}) + "\n" for c in take(4)), rows=4)
    put("data/flickr30k/results_20130124.token", "".join(f"{i}.jpg#0\t{c}\n" for i, c in enumerate(take(6))), rows=6)
    put("data/textcaps/TextCaps_0.1_train.json", json.dumps({"data": [{"caption_str": c} for c in take(4)]}), rows=4)
    put("data/llm/prompts.txt", "".join(f"{c}\n" for c in take(6)), rows=6)
    put("data/llm/prompts.csv", pd.DataFrame({"prompt": take(4)}).to_csv(index=False), rows=4)
    put("data/llm/prompts.jsonl", "".join(json.dumps({"prompt": c}) + "\n" for c in take(4)), rows=4)
    put("data/coyo-700m/data/part-00000.parquet", frame=pd.DataFrame({"text": take(40)}), rows=40)
    return files


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess, list[str]]:
    from img2prompt.generate.random_sd import build_random_pipeline

    root = tmp_path_factory.mktemp("recipe")
    write_corpora(root)
    build_random_pipeline("tiny", root / "tokenizer").save_pretrained(root / "tiny_sd")
    kaggle = SHARED_DATA / "kaggle_sample" / "images"
    if not kaggle.is_dir():  # a user's clone has no ../shared: three images of our own stand in
        from PIL import Image

        kaggle = root / "kaggle"
        kaggle.mkdir()
        for i in range(3):
            Image.fromarray(np.random.default_rng(i).integers(0, 256, (64, 64, 3), np.uint8)).save(kaggle / f"k{i}.png")
    overrides = [*SIZES, *DEVICE, *TINY, f"generate.diffusion.model={root / 'tiny_sd'}",
                 f"recipe.kaggle_images={kaggle}"]
    args = [arg for item in overrides for arg in ("--set", item)]
    run = subprocess.run([sys.executable, "-m", "img2prompt", "recipe", "configs/recipe/full.yaml", *args],
                         cwd=root, capture_output=True, text=True, timeout=900, env={**os.environ})
    return root, run, args


def test_the_shipped_recipe_runs_to_a_validated_submission(rehearsal):
    root, run, _ = rehearsal
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    out = root / "runs" / "recipe"
    from img2prompt.kaggle import validate_submission

    ids, _ = validate_submission(out / "submission.csv")
    assert len(ids) >= 3
    for backbone in BACKBONES:
        for stage in (1, 2):
            assert (out / "train" / f"{backbone}_stage{stage}" / "model.safetensors").is_file()
    spec = yaml.safe_load((out / "ensemble.yaml").read_text())["ensemble"]
    assert sorted(Path(m["model"]).name for m in spec["members"]) == sorted(f"{b}_stage2" for b in BACKBONES)
    metrics = json.loads((out / "evaluate" / "metrics.json").read_text())
    assert len(metrics) == len(BACKBONES) + 1 and all(m["images"] > 0 for m in metrics.values())
    assert "validate submission" in run.stdout and "ok," in run.stdout


def test_the_shard_sets_hold_their_tier_and_splits(rehearsal):
    from img2prompt.shards import find_shards, read_labels

    root, run, _ = rehearsal
    assert run.returncode == 0
    for tier, splits in (("hq", {"train", "val", "test"}), ("lq", {"train"})):
        labels = [lab for shard in find_shards(root / "runs/recipe/generate" / tier) for lab in read_labels(shard)]
        assert {lab.meta["tier"] for lab in labels} == {tier}
        assert {lab.meta["split"] for lab in labels} == splits


def test_vizwiz_test_json_is_not_read(rehearsal):
    root, run, _ = rehearsal
    assert run.returncode == 0
    stats = json.loads((root / "runs/recipe/curate/stats.json").read_text())
    vizwiz = next(s for s in stats["sources"] if s["name"] == "vizwiz")
    assert vizwiz["read"] == 8 and vizwiz["bad_rows"] == 0


def test_a_second_run_resumes_and_the_dry_run_prints_every_command(rehearsal):
    root, run, args = rehearsal
    assert run.returncode == 0
    dry = subprocess.run([sys.executable, "-m", "img2prompt", "recipe", "configs/recipe/full.yaml", "--dry-run",
                          "--gpus", "8", *args], cwd=root, capture_output=True, text=True, check=True).stdout
    lines = dry.strip().splitlines()
    steps = 1 + 2 + 2 * len(BACKBONES) + 2 * len(BACKBONES) + 2 + 1 + 2
    assert len(lines) == steps and all(line.endswith("# done") for line in lines)
    launched = 2 * len(BACKBONES) + 2 * len(BACKBONES) + 1 + 1  # train stages, predict val + test, ensemble, kaggle
    assert sum(line.startswith("accelerate launch --multi_gpu --num_processes 8") for line in lines) == launched
    assert lines[1].startswith("torchrun --standalone --nproc_per_node 8 --no-python img2prompt generate")


@pytest.mark.parametrize(("override", "message"), [
    ("generate.prompts=runs/other.parquet", "generate.prompts is runs/other.parquet, but"),
    ("train.init_from=runs/x", "has init_from runs/x; it needs no init_from"),
    ("train.data.shards=[runs/nowhere]", "reads shards runs/nowhere, which no generate config of the recipe writes"),
    ("recipe.kaggle_images=no/such/folder", "recipe.kaggle_images: no such folder"),
])
def test_a_config_that_stops_chaining_fails_in_one_line_before_anything_runs(override, message):
    recipe_path = "configs/recipe/full.yaml"
    with pytest.raises(Img2PromptError, match=message) as info:
        plan(load_config(recipe_path, [o for o in [override] if o.startswith("recipe.")]).recipe, [override],
             recipe_path)
    assert "\n" not in str(info.value)


def test_the_one_gpu_recipe_runs_with_the_zero_shot_model_as_first_member(tmp_path, monkeypatch, tiny_clip):
    """The same overrides, plus the zero-shot member swapped for the tiny open_clip twin (registered in this
    process, so this run is in-process: exactly what `img2prompt recipe` does on one GPU)."""
    from img2prompt.cli import app
    from img2prompt.generate.random_sd import build_random_pipeline
    from img2prompt.recipe import run_recipe

    write_corpora(tmp_path)
    build_random_pipeline("tiny", tmp_path / "tokenizer").save_pretrained(tmp_path / "tiny_sd")
    monkeypatch.chdir(tmp_path)
    name, weights = tiny_clip
    member = f"clip:{name}/{weights}?bank=runs/one_gpu/curate/prompts.parquet"
    overrides = [*SIZES, *DEVICE, *TINY, f"generate.diffusion.model={tmp_path / 'tiny_sd'}",
                 f"recipe.members=['{member}']"]
    steps = run_recipe("configs/recipe/one_gpu.yaml", overrides, gpus=1, dry_run=False,
                       run_in_process=lambda argv: app(argv, standalone_mode=False))
    assert [s.name for s in steps][:3] == ["curate", "generate hq", "train vit_l_14_336 stage 1"]
    members = yaml.safe_load((tmp_path / "runs/one_gpu/ensemble.yaml").read_text())["ensemble"]["members"]
    assert members[0]["model"].startswith(f"clip:{name}/") and Path(members[1]["model"]).name == "vit_l_14_336"
    metrics = json.loads((tmp_path / "runs/one_gpu/evaluate/metrics.json").read_text())
    assert len(metrics) == 3
