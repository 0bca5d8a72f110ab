"""The verbs that train and chain the stages: train, recipe, quickstart."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from img2prompt.cli.app import ConfigArg, app, section, set_option, verb


@verb("train", needs=("train",))
def train(
    config: Annotated[Path, typer.Argument(help="YAML with a train: section (see configs/train/).")],
    set_: Annotated[list[str] | None, set_option("train.KEY=VALUE")] = None,
) -> None:
    """Train an image-to-embedding regressor on shards; multi-GPU: accelerate launch / torchrun this verb."""
    import os

    import torch

    from img2prompt.train.config import TrainConfig
    from img2prompt.train.trainer import train as run_train

    out = run_train(section(config, set_, "train", TrainConfig))
    typer.echo(f"checkpoint: {out}")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available():
        # gloo may abort in interpreter teardown after a finished, saved run (docs/STACK.md pitfall 5):
        # leave without teardown so the exit status reports the training itself.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


@verb("recipe", needs=("train", "generate", "curate"))
def recipe(
    config: Annotated[Path, typer.Argument(help="YAML with a recipe: section, e.g. configs/recipe/full.yaml.")],
    gpus: Annotated[int, typer.Option(min=1, help="GPUs of this node: N > 1 runs steps under torchrun/accelerate.")]
    = 1,
    dry_run: Annotated[bool, typer.Option(help="Print every command of the chain, run nothing.")] = False,
    set_: Annotated[
        list[str] | None, set_option("SECTION.KEY=VALUE, given to each step whose config has SECTION")
    ] = None,
) -> None:
    """Run a whole recipe chain (download -> curate -> generate -> train -> predict -> ensemble -> evaluate)."""
    _run_recipe(config, set_ or [], gpus=gpus, dry_run=dry_run)


@verb("quickstart", needs=("train", "generate", "curate"))
def quickstart(
    config: ConfigArg = None,
    overrides: Annotated[list[str] | None, set_option("SECTION.KEY=VALUE, given to each step whose config has "
                                                      "SECTION")] = None,
) -> None:
    """Run every stage offline at laptop scale (configs/recipe/quickstart.yaml): curate, generate, train two
    models, ensemble, evaluate, decode."""
    from img2prompt.recipe.run import QUICKSTART

    _run_recipe(config or QUICKSTART, overrides or [], gpus=1, dry_run=False)


def _run_recipe(config: Path, overrides: list[str], *, gpus: int, dry_run: bool) -> None:
    import json

    from img2prompt.recipe.run import run_recipe

    summary = run_recipe(config, overrides, gpus=gpus, dry_run=dry_run,
                         run_in_process=lambda argv: app(argv, standalone_mode=False))
    if summary is not None:
        typer.echo(json.dumps(summary, indent=2))
