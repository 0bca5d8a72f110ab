"""The dress rehearsal: the shipped recipe configs, in order, through every step to a validated submission.

It starts at ``download``: tiny copies of every corpus, in each publisher's format and packaging, are served by local
stand-ins of their hosts (tests/hub_server.py: the hub, the HTTPS hosts, Kaggle's API) and fetched by the real
clients into data/; ``write-prompts`` writes the LLM tier with a tiny random-init LM. Only sizes, device settings,
the tiny twins and the catalog's pins (the tiny files' own) are overridden, so the day a shipped config stops
chaining (a path, a tier, a split, an init_from) this test fails.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import SHARED_DATA
from hub_server import LocalHosts
from img2prompt.errors import Img2PromptError
from img2prompt.recipe.plan import plan
from tiny_corpora import serve_tiny_catalog
from tiny_llm import build_tiny_llm

BACKBONES = ("vit_l_14_336", "convnext_xxlarge", "blip2_qformer")
SIZES = ["curate.splits.val=0.2", "curate.splits.test=0.2", "generate.size=16", "generate.diffusion.save_size=16",
         "generate.diffusion.steps=2", "train.model.image_size=56", "train.data.batch_size=4",
         "train.data.num_workers=0", "train.optim.epochs=1"]
DEVICE = ["curate.embedding.device=cpu", "generate.diffusion.dtype=fp32", "generate.diffusion.compile=false",
          "train.precision='no'"]
TINY = ["train.model.tiny=true", "train.model.pretrained=false"]  # + generate.diffusion.model=<tiny SD folder>
WRITE = ["write_prompts.revision=null", "write_prompts.backend=transformers", "write_prompts.device=cpu",
         "write_prompts.dtype=float32", "write_prompts.count=6", "write_prompts.batch_size=4",
         "write_prompts.per_request=3", "write_prompts.max_new_tokens=24", "write_prompts.progress=false"]
# + write_prompts.model=<tiny LM folder>


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
    from img2prompt.scene_grammar import random_prompts

    root = tmp_path_factory.mktemp("recipe")
    hosts = LocalHosts(kaggle=True)
    kaggle = SHARED_DATA / "kaggle_sample" / "images"
    if not kaggle.is_dir():  # a user's clone has no ../shared: three images of our own stand in
        from PIL import Image

        kaggle = root / "kaggle"
        kaggle.mkdir()
        for i in range(3):
            Image.fromarray(np.random.default_rng(i).integers(0, 256, (64, 64, 3), np.uint8)).save(kaggle / f"k{i}.png")
    catalog = serve_tiny_catalog(hosts, root, random_prompts(400, seed=11),
                                 kaggle_images=kaggle if hosts.kaggle else None)
    build_random_pipeline("tiny", root / "tokenizer").save_pretrained(root / "tiny_sd")
    build_tiny_llm(root / "tiny_llm")
    images = "data/kaggle/images" if hosts.kaggle else str(kaggle)  # fetched by the kaggle client, else at hand
    overrides = [*SIZES, *DEVICE, *TINY, *WRITE, f"generate.diffusion.model={root / 'tiny_sd'}",
                 f"write_prompts.model={root / 'tiny_llm'}", f"recipe.download={catalog}",
                 f"recipe.images=[{images}]"]
    args = [arg for item in overrides for arg in ("--set", item)]
    env = {**os.environ, "HF_HUB_OFFLINE": "0", "KAGGLE_API_ENVIRONMENT": "LOCALHOST", "KAGGLE_USERNAME": "me",
           "KAGGLE_KEY": "k", "KAGGLE_CONFIG_DIR": str(root / "kaggle_config")}
    try:
        run = subprocess.run([sys.executable, "-m", "img2prompt", "recipe", "configs/recipe/full.yaml", *args],
                             cwd=root, capture_output=True, text=True, timeout=900, env=env)
    finally:
        hosts.close()
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
    metrics = json.loads((out / "report" / "metrics.json").read_text())
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
    steps = 2 + 1 + 2 + 2 * len(BACKBONES) + 2 * len(BACKBONES) + 2 + 1 + 2
    assert len(lines) == steps and all(line.endswith("# done") for line in lines)
    assert lines[0].startswith("img2prompt download diffusiondb coco vizwiz") and " --optional flickr30k" in lines[0]
    assert lines[1].startswith("img2prompt write-prompts configs/write_prompts/recipe.yaml")
    launched = 2 * len(BACKBONES) + 2 * len(BACKBONES) + 1 + 1  # train stages, predict val + test, ensemble, images
    assert sum(line.startswith("accelerate launch --multi_gpu --num_processes 8") for line in lines) == launched
    assert lines[3].startswith("torchrun --standalone --nproc_per_node 8 --no-python img2prompt generate")


@pytest.mark.parametrize(("override", "message"), [
    ("generate.prompts=runs/other.parquet", "generate.prompts is runs/other.parquet, but"),
    ("train.init_from=runs/x", "has init_from runs/x; it needs no init_from"),
    ("train.data.shards=[runs/nowhere]", "reads shards runs/nowhere, which no generate config of the recipe writes"),
    ("recipe.images=[no/such/folder]", "no/such/folder: recipe.images: no such file or folder"),
    ("trian.seed=1", "no step of configs/recipe/full.yaml reads a 'trian' section (did you mean 'train'?)"),
    ("curate", "--set 'curate': expected KEY=VALUE"),
    ("curate=1", "--set 'curate=1': expected SECTION.KEY=VALUE"),
])
def test_a_config_that_stops_chaining_fails_in_one_line_before_anything_runs(override, message):
    with pytest.raises(Img2PromptError, match=re.escape(message)) as info:
        plan("configs/recipe/full.yaml", [override])
    assert "\n" not in str(info.value)


def test_recipe_out_moves_the_whole_chain():
    """Every step of the moved chain reads and writes under the new root, and the chain still checks."""
    _, steps = plan("configs/recipe/full.yaml", ["recipe.out=/data/elsewhere"])
    words = " ".join(arg for step in steps for arg in step.argv if "runs/" in arg or "/data/elsewhere" in arg)
    assert "runs/recipe" not in words and words.count("/data/elsewhere/train/vit_l_14_336_stage1") >= 2


def test_the_one_gpu_recipe_runs_with_the_zero_shot_model_as_first_member(tmp_path, monkeypatch, tiny_clip):
    """The same overrides, plus the zero-shot member swapped for the tiny open_clip twin (registered in this
    process, so this run is in-process: exactly what `img2prompt recipe` does on one GPU)."""
    from img2prompt.cli import app
    from img2prompt.generate.random_sd import build_random_pipeline
    from img2prompt.recipe.run import run_recipe

    write_corpora(tmp_path)
    build_random_pipeline("tiny", tmp_path / "tokenizer").save_pretrained(tmp_path / "tiny_sd")
    monkeypatch.chdir(tmp_path)
    name, weights = tiny_clip
    member = f"clip:{name}/{weights}?bank=runs/one_gpu/curate/prompts.parquet"
    overrides = [*SIZES, *DEVICE, *TINY, f"generate.diffusion.model={tmp_path / 'tiny_sd'}",
                 f"recipe.members=['{member}']", "recipe.download=null",  # the corpora are laid out by hand
                 "recipe.images=[]"]
    _, steps = plan("configs/recipe/one_gpu.yaml", overrides)
    assert [s.name for s in steps][:3] == ["curate", "generate hq", "train vit_l_14_336 stage 1"]
    summary = run_recipe("configs/recipe/one_gpu.yaml", overrides, gpus=1, dry_run=False,
                         run_in_process=lambda argv: app(argv, standalone_mode=False))
    assert summary["note"] is None  # not the quickstart's scenes: no synthetic-data warning
    members = yaml.safe_load((tmp_path / "runs/one_gpu/ensemble.yaml").read_text())["ensemble"]["members"]
    assert members[0]["model"].startswith(f"clip:{name}/") and Path(members[1]["model"]).name == "vit_l_14_336"
    metrics = json.loads((tmp_path / "runs/one_gpu/report/metrics.json").read_text())
    assert len(metrics) == 3 and len(summary["test_mean_cosine"]) == 3
