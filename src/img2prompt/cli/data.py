"""The verbs that fetch, write, embed, curate and render the data: download, write-prompts, embed, curate, generate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from img2prompt.cli.app import section, set_option, verb
from img2prompt.errors import Img2PromptError
from img2prompt.extras import require

DOWNLOAD_CATALOG = "configs/download/recipe.yaml"

@verb("download", needs=("download",))
def download(
    corpora: Annotated[list[str] | None, typer.Argument(help="Corpora to fetch (default: every one of the catalog).")]
    = None,
    to: Annotated[Path | None, typer.Option("--to", help="Root folder (default: download.root, data).")] = None,
    dry_run: Annotated[bool, typer.Option(help="List every file, its size and the total; fetch nothing.")] = False,
    parts: Annotated[int | None, typer.Option(min=1, help="How many parts of a corpus in parts (COYO-700M: 128).")]
    = None,
    optional: Annotated[list[str] | None, typer.Option("--optional", help="A corpus whose failure only warns "
                                                       "(read by optional curate sources; repeatable).")] = None,
    config: Annotated[Path, typer.Option("--config", "-c", help="Corpus catalog (a download: section).")]
    = Path(DOWNLOAD_CATALOG),
    set_: Annotated[list[str] | None, set_option("download.KEY=VALUE")] = None,
) -> None:
    """Fetch the corpora the recipe reads into the paths it reads them from: pinned, verified, resumable."""
    from img2prompt.download.catalog import DownloadConfig
    from img2prompt.download.run import download as run_download
    from img2prompt.download.run import print_plan, select

    settings = section(config, set_, "download", DownloadConfig)
    if to is not None:
        settings.root = to
    if dry_run:
        print_plan(settings, select(settings, corpora, parts))
        return
    run_download(settings, corpora, parts=parts, optional=frozenset(optional or []))


@verb("write-prompts", needs=("curate",))
def write_prompts(
    config: Annotated[Path, typer.Argument(help="YAML with a write_prompts: section (configs/write_prompts/).")],
    set_: Annotated[list[str] | None, set_option("write_prompts.KEY=VALUE")] = None,
) -> None:
    """Write prompts with a local instruct LLM, seeded with bank and earlier examples (resumable, deduplicated)."""
    from img2prompt.curate.write_prompts import WritePromptsConfig
    from img2prompt.curate.write_prompts import write_prompts as run_write_prompts

    out = run_write_prompts(section(config, set_, "write_prompts", WritePromptsConfig))
    typer.echo(f"wrote {out}")


@verb("embed")
def embed(
    prompts: Annotated[Path, typer.Argument(help="CSV with columns imgId,prompt.")],
    kaggle: Annotated[Path | None, typer.Option(help="Write the Kaggle imgId_eId,val CSV here.")] = None,
    out: Annotated[Path | None, typer.Option(help="Write a prompt-table Parquet here.")] = None,
    model: Annotated[str, typer.Option(help="'packaged' (offline wheel), a local path or a hub id.")] = "packaged",
    backend: Annotated[Literal["exact", "int8"], typer.Option(help="exact (the targets) or int8 (fast, approximate).")
                       ] = "exact",
    max_tokens: Annotated[int, typer.Option(min=1, help="Padded tokens per batch.")] = 1024,
    cache_dir: Annotated[Path | None, typer.Option(help="On-disk embedding cache folder.")] = None,
) -> None:
    """Embed prompts with all-MiniLM-L6-v2 exactly as the Kaggle host did."""
    from img2prompt.embed_command import run_embed

    if backend == "int8":
        require("curate")
    if kaggle is None and out is None:
        raise Img2PromptError("embed: give --kaggle OUT.csv and/or --out OUT.parquet")
    run_embed(prompts, kaggle=kaggle, out=out, model=model, backend=backend, max_tokens=max_tokens,
              cache_dir=cache_dir)


@verb("curate", needs=("curate",))
def curate(
    config: Annotated[Path, typer.Argument(help="YAML with a curate: section, e.g. configs/curate/shared_data.yaml.")],
    set_: Annotated[list[str] | None, set_option("curate.KEY=VALUE")] = None,
) -> None:
    """Curate prompts: read sources, clean, deduplicate, tier and split; write prompts.parquet + report."""
    from img2prompt.curate.config import CurateConfig
    from img2prompt.curate.run import curate as run_curate

    table = run_curate(section(config, set_, "curate", CurateConfig))
    typer.echo(f"wrote {table} and {table.parent / 'report.html'}")


@verb("generate", needs=("generate",))
def generate(
    config: Annotated[Path, typer.Argument(help="YAML with a generate: section, e.g. configs/generate/scenes.yaml.")],
    overrides: Annotated[list[str] | None, set_option("generate.KEY=VALUE")] = None,
) -> None:
    """Draw training images for a prompt table into WebDataset shards (resumable; torchrun for many GPUs)."""
    from img2prompt.generate.run import GenerateConfig, rank_and_world
    from img2prompt.generate.run import generate as run_generate
    from img2prompt.shards import Manifest

    out = run_generate(section(config, overrides, "generate", GenerateConfig))
    rank, world = rank_and_world()
    manifest = Manifest(out)
    typer.echo(f"rank {rank}/{world}: {out} holds {manifest.total()} samples in {len(manifest.finished())} shards")
