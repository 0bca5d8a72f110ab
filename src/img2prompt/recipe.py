"""``img2prompt recipe``: the winning recipe as one chain of stage commands, built from the shipped configs.

curate -> generate (one shard set per config: HQ and LQ) -> train each model's stages in order (stage 1 on LQ,
stage 2 on HQ from stage 1) -> predict every model on the held-out set's val and test splits straight from the
shards -> fit the ensemble on val -> predict and evaluate test -> predict the Kaggle test images -> validate
the submission.

Before anything runs, the chain is checked: every config must read exactly what the one before it writes
(the curated table, the shard sets, the stage-1 checkpoint), so a config that stops chaining fails in a line,
not after a day of GPU time. Each step is the command a user would type; with ``--gpus N`` (N > 1) it runs
under its launcher (``torchrun`` for generate, ``accelerate launch`` for train and predict), and ``--dry-run``
prints every command. Every stage resumes itself and each finished step leaves a marker, so a killed recipe
started again resumes where it stopped.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from img2prompt.config import OUTPUT_FOLDER, StrictModel, check_paths, load_config
from img2prompt.errors import Img2PromptError, fail
from img2prompt.models.specs import parse
from img2prompt.steps import Steps

Launcher = Literal["none", "torchrun", "accelerate"]
HELD_OUT = ("val", "test")


class RecipeConfig(StrictModel):
    """The ``recipe:`` section: which stage configs make the chain, and where its own outputs go."""

    out: Annotated[Path, OUTPUT_FOLDER] = Path("runs/recipe")  # predictions, ensemble, evaluation, submission
    curate: str
    generate: list[str] = Field(min_length=1)  # one shard set per config; one of them holds val and test
    models: dict[str, list[str]] = Field(min_length=1)  # name -> its train configs, stage by stage
    members: list[str] = Field(default_factory=list)  # ensemble members without training, e.g. clip:MODEL/TAG
    kaggle_images: str | None = None  # folder of the images to submit for (the competition's test images)


@dataclass(frozen=True)
class Step:
    """One command of the chain: an ``img2prompt`` verb line and the launcher it needs on several GPUs."""

    name: str
    argv: list[str]
    launcher: Launcher = "none"

    def command(self, gpus: int) -> list[str]:
        if gpus <= 1 or self.launcher == "none":
            return ["img2prompt", *self.argv]
        if self.launcher == "torchrun":
            return ["torchrun", "--standalone", "--nproc_per_node", str(gpus), "--no-python", "img2prompt",
                    *self.argv]
        return ["accelerate", "launch", "--multi_gpu", "--num_processes", str(gpus), "-m", "img2prompt", *self.argv]


def _only(overrides: list[str], section: str) -> list[str]:
    """The overrides of one section: each step's config gets those of the section it reads."""
    return [item for item in overrides if item.split(".", 1)[0] == section]


def _sets(overrides: list[str], section: str) -> list[str]:
    """The ``--set`` arguments of one section, for the step whose config has that section."""
    return [arg for item in _only(overrides, section) for arg in ("--set", item)]


def _slug(spec: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", spec).strip("_")


def plan(recipe: RecipeConfig, overrides: list[str], source: str) -> list[Step]:
    """The chain's steps, after checking that each config reads what the previous one writes."""
    curate = load_config(recipe.curate, _only(overrides, "curate")).curate
    table = Path(curate.out) / "prompts.parquet"
    steps = [Step("curate", ["curate", recipe.curate, *_sets(overrides, "curate")])]
    shard_sets: dict[Path, list[str]] = {}  # out -> the splits it draws
    for path in recipe.generate:
        generate = load_config(path, _only(overrides, "generate")).generate
        if Path(generate.prompts) != table:
            raise fail(path, f"generate.prompts is {generate.prompts}, but {recipe.curate} writes {table}")
        shard_sets[Path(generate.out)] = generate.splits
        steps.append(Step(f"generate {Path(generate.out).name}", ["generate", path, *_sets(overrides, "generate")],
                          "torchrun"))
    held_out = [out for out, splits in shard_sets.items() if set(HELD_OUT) <= set(splits)]
    if len(held_out) != 1:
        raise fail(source, f"exactly one generate config must draw the val and test splits, got {len(held_out)}")
    truth = str(held_out[0])

    finals = {_slug(spec.partition("?")[0]): spec for spec in recipe.members}  # untrained members come first
    for spec in recipe.members:
        bank = parse(spec).params.get("bank")
        if bank is not None and Path(bank) != table and not Path(bank).is_file():
            raise fail(source, f"member {spec}: its bank {bank} is neither {table} (which curate writes) nor a file")
    for name, stages in recipe.models.items():
        previous: Path | None = None
        for number, path in enumerate(stages, start=1):
            train = load_config(path, _only(overrides, "train")).train
            start = Path(train.init_from) if train.init_from else None
            if start != previous:
                wanted = f"init_from: {previous}" if previous else "no init_from (it is the first stage)"
                raise fail(path, f"stage {number} of {name} has init_from {train.init_from}; it needs {wanted}")
            for shards in (*train.data.shards, *train.data.val_shards):
                if Path(shards) not in shard_sets:
                    raise fail(path, f"reads shards {shards}, which no generate config of the recipe writes "
                                     f"({', '.join(map(str, shard_sets))})")
            steps.append(Step(f"train {name} stage {number}", ["train", path, *_sets(overrides, "train")],
                              "accelerate"))
            previous = Path(train.out)
        finals[name] = str(previous)

    out = recipe.out
    predictions = {(name, split): str(out / "predictions" / f"{name}-{split}.parquet")
                   for name in finals for split in HELD_OUT}
    for (name, split), target in predictions.items():
        steps.append(Step(f"predict {name} {split}",
                          ["predict", finals[name], truth, "--split", split, "--out", target], "accelerate"))
    if len(finals) > 1:
        final = str(out / "ensemble.yaml")
        steps.append(Step("fit ensemble", ["ensemble", *(predictions[n, "val"] for n in finals), "--truth", truth,
                                           "--out", final]))
        test = str(out / "predictions" / "ensemble-test.parquet")
        steps.append(Step("predict ensemble test",
                          ["predict", final, truth, "--split", "test", "--out", test], "accelerate"))
        scored = [*(predictions[n, "test"] for n in finals), test]
    else:
        final, scored = next(iter(finals.values())), [predictions[next(iter(finals)), "test"]]
    steps.append(Step("evaluate test", ["evaluate", *scored, "--truth", truth, "--out", str(out / "evaluate"),
                                        "--images", truth]))
    if recipe.kaggle_images is not None:
        if not Path(recipe.kaggle_images).is_dir():
            raise fail(recipe.kaggle_images, "recipe.kaggle_images: no such folder (the images to submit for)")
        submission = str(out / "submission.csv")
        steps.append(Step("predict kaggle images", ["predict", final, recipe.kaggle_images, "--kaggle", submission],
                          "accelerate"))
        steps.append(Step("validate submission", ["validate-submission", submission]))
    return steps


def run_recipe(path: str | Path, overrides: list[str], *, gpus: int, dry_run: bool,
               run_in_process: Callable[[list[str]], None]) -> list[Step]:
    """Plan the chain, then print it (``dry_run``) or run each unfinished step; returns the steps.

    With one GPU (or none) every step runs in this process through ``run_in_process`` (the CLI), so the
    packages load once; with more, each step is a launcher subprocess.
    """
    recipe = load_config(path, _only(overrides, "recipe")).recipe
    steps = plan(recipe, overrides, str(path))
    if not dry_run:
        check_paths(recipe, "recipe")
    markers = Steps(recipe.out, "recipe")
    for step in steps:
        line = shlex.join(step.command(gpus))
        if dry_run:
            print(f"{line}{'   # done' if markers.done(step.name) else ''}")
            continue
        markers(step.name, lambda step=step, line=line: _run(step, line, gpus, run_in_process))
    return steps


def _run(step: Step, line: str, gpus: int, run_in_process: Callable[[list[str]], None]) -> None:
    print(f"$ {line}", flush=True)
    if gpus <= 1 or step.launcher == "none":
        try:
            run_in_process(step.argv)
        except Img2PromptError as exc:
            raise Img2PromptError(f"recipe step '{step.name}' failed: {exc}") from None
        return
    code = subprocess.run(step.command(gpus), check=False).returncode
    if code != 0:
        raise Img2PromptError(f"recipe step '{step.name}' failed with exit code {code}: {line}")
