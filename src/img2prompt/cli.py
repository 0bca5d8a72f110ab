"""The ``img2prompt`` command: one thin verb per stage. Heavy imports stay inside the verbs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from img2prompt.errors import Img2PromptError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Recover the prompt behind an image made by a text-to-image model.",
)

ConfigArg = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file (see configs/).")]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="Dotted override, e.g. --set train.lr=1e-4 (repeatable).")
]


@app.command()
def embed(
    prompts: Annotated[Path, typer.Argument(help="CSV with columns imgId,prompt.")],
    kaggle: Annotated[Path | None, typer.Option(help="Write the Kaggle imgId_eId,val CSV here.")] = None,
    out: Annotated[Path | None, typer.Option(help="Write a prompt-table Parquet here.")] = None,
    model: Annotated[str, typer.Option(help="'packaged' (offline wheel), a local path or a hub id.")] = "packaged",
    backend: Annotated[str, typer.Option(help="exact (targets) or int8 (fast, approximate).")] = "exact",
    max_tokens: Annotated[int, typer.Option(help="Padded tokens per batch.")] = 1024,
    cache_dir: Annotated[Path | None, typer.Option(help="On-disk embedding cache folder.")] = None,
) -> None:
    """Embed prompts with all-MiniLM-L6-v2 exactly as the Kaggle host did."""
    from img2prompt.embed_command import run_embed

    if kaggle is None and out is None:
        raise Img2PromptError("embed: give --kaggle OUT.csv and/or --out OUT.parquet")
    run_embed(prompts, kaggle=kaggle, out=out, model=model, backend=backend, max_tokens=max_tokens,
              cache_dir=cache_dir)


@app.command("validate-submission")
def validate_submission(
    submission: Annotated[Path, typer.Argument(help="Kaggle imgId_eId,val CSV.")],
    prompts: Annotated[
        Path | None, typer.Option(help="imgId,prompt CSV: also check the id set and print the score.")
    ] = None,
) -> None:
    """Check a submission: 384 rows per image, ids in order, finite unit vectors."""
    from img2prompt.kaggle import mean_cosine, read_prompts_csv, validate_submission

    expected = read_prompts_csv(prompts) if prompts is not None else None
    ids, vectors = validate_submission(submission, None if expected is None else list(expected.imgId))
    typer.echo(f"{submission}: ok, {len(ids)} images x 384 dims")
    if expected is not None:
        from img2prompt.embedding import TextEmbedder

        order = {image_id: i for i, image_id in enumerate(ids)}
        truth = TextEmbedder().encode(list(expected.prompt))
        predicted = vectors[[order[i] for i in expected.imgId]]
        typer.echo(f"mean cosine to the true prompts: {mean_cosine(predicted, truth):.4f}")


@app.command()
def generate(
    config: Annotated[Path, typer.Argument(help="YAML with a generate: section, e.g. configs/generate/scenes.yaml.")],
    overrides: SetOpt = None,
) -> None:
    """Draw training images for a prompt table into WebDataset shards (resumable; torchrun for many GPUs)."""
    from img2prompt.config import load_section
    from img2prompt.generate.run import GenerateConfig, rank_and_world
    from img2prompt.generate.run import generate as run_generate
    from img2prompt.shards import Manifest

    out = run_generate(load_section(GenerateConfig, "generate", config, overrides))
    rank, world = rank_and_world()
    manifest = Manifest(out)
    typer.echo(f"rank {rank}/{world}: {out} holds {manifest.total()} samples in {len(manifest.finished())} shards")


@app.command()
def curate(
    config: Annotated[Path, typer.Argument(help="YAML with a curate: section, e.g. configs/curate/shared_data.yaml.")],
    set_: SetOpt = None,
) -> None:
    """Curate prompts: read sources, clean, deduplicate, tier and split; write prompts.parquet + report."""
    from img2prompt.prompts.curate import curate as run_curate
    from img2prompt.prompts.curate import load_config

    table = run_curate(load_config(config, set_ or []))
    typer.echo(f"wrote {table} and {table.parent / 'report.html'}")


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="YAML with a train: section (see configs/train/).")],
    set_: SetOpt = None,
) -> None:
    """Train an image-to-embedding regressor on shards; multi-GPU: accelerate launch / torchrun this verb."""
    import os

    import torch

    from img2prompt.train.loop import load_train_config
    from img2prompt.train.loop import train as run_train

    out = run_train(load_train_config(config, set_ or []))
    typer.echo(f"checkpoint: {out}")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available():
        # gloo may abort in interpreter teardown after a finished, saved run (docs/STACK.md pitfall 5):
        # leave without teardown so the exit status reports the training itself.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def main() -> None:
    """Console entry point: user errors print one line and exit 1, never a traceback."""
    try:
        app()
    except Img2PromptError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
