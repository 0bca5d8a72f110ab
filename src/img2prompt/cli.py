"""The ``img2prompt`` command: one thin verb per stage. Heavy imports stay inside the verbs.

``--help`` lists the verbs in pipeline order (``ORDER``) and every verb's help ends with examples
(``EXAMPLES``; a test checks that each ``--set`` in them is a valid config key).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from typer.core import TyperGroup

from img2prompt import __version__
from img2prompt.errors import Img2PromptError

if TYPE_CHECKING:
    from img2prompt.config import StrictModel

Section = TypeVar("Section", bound="StrictModel")

STAGES = "Stages, in pipeline order"
WHOLE = "The whole pipeline"
CHECKS = "Checks"
# Verb -> its --help panel, in the order --help lists them.
ORDER = {
    "download": STAGES, "write-prompts": STAGES, "embed": STAGES, "curate": STAGES, "generate": STAGES,
    "train": STAGES, "predict": STAGES, "ensemble": STAGES, "evaluate": STAGES, "decode": STAGES,
    "interrogate": STAGES, "serve": STAGES, "push": STAGES, "recipe": WHOLE, "quickstart": WHOLE,
    "validate-submission": CHECKS,
}
EXAMPLES = {
    "download": [
        "img2prompt download --dry-run",
        "img2prompt download coco vizwiz --to data",
        "img2prompt download coyo --parts 32 -c configs/download/recipe.yaml \\",
        "    --set download.progress=false",
    ],
    "write-prompts": [
        "img2prompt write-prompts configs/write_prompts/recipe.yaml",
        "img2prompt write-prompts configs/write_prompts/recipe.yaml \\",
        "    --set write_prompts.count=20000 --set write_prompts.out=data/llm/x.jsonl",
    ],
    "embed": [
        "img2prompt embed prompts.csv --kaggle submission.csv",
        "img2prompt embed prompts.csv --out prompts.parquet --backend int8",
    ],
    "curate": [
        "img2prompt curate configs/curate/shared_data.yaml",
        "img2prompt curate configs/curate/shared_data.yaml \\",
        "    --set curate.dedup.threshold=0.85 --set curate.out=runs/curate2",
    ],
    "generate": [
        "img2prompt generate configs/generate/scenes.yaml --set generate.size=256",
        "torchrun --nproc-per-node 8 -m img2prompt generate \\",
        "    configs/generate/sd2_hq.yaml --set generate.diffusion.steps=25",
    ],
    "train": [
        "img2prompt train configs/train/cpu_quickstart.yaml --set train.optim.lr=1e-4",
        "accelerate launch --config_file configs/accelerate/fsdp_vit_l_14_336.yaml \\",
        "    -m img2prompt train configs/train/vit_l_14_336_stage1.yaml \\",
        "    --set train.data.batch_size=16 --set train.optim.grad_accum=4",
    ],
    "predict": [
        "img2prompt predict runs/train/lite0 images/ --kaggle submission.csv",
        "img2prompt predict ensemble.yaml shards/ --split test --out test.parquet",
        "img2prompt predict mean:prompts.parquet images/ --out mean.parquet",
    ],
    "ensemble": [
        "img2prompt ensemble vit-val.parquet eva-val.parquet --truth shards/ \\",
        "    --out ensemble.yaml",
    ],
    "evaluate": [
        "img2prompt evaluate vit-test.parquet eva-test.parquet --truth shards/ \\",
        "    --out report/ --images shards/ --bank bank.parquet \\",
        "    --set decode.mode=best",
    ],
    "decode": [
        "img2prompt decode bank.parquet --text 'a castle on a hill at sunset'",
        "img2prompt decode bank.parquet --predictions test.parquet \\",
        "    --out decoded.csv --mode best --set decode.modes.best.beam=8",
    ],
    "serve": [
        "img2prompt serve runs/train/lite0 --bank bank.parquet --port 8000",
        "img2prompt serve ensemble.yaml -c configs/serve/gpu.yaml \\",
        "    --set serve.batch_size=32",
    ],
    "interrogate": [
        "img2prompt interrogate photo.png --bank runs/quickstart/bank/prompts.parquet",
        "img2prompt interrogate images/ --model hf-hub:me/vit-l --bank bank.parquet \\",
        "    --mode best --json --set decode.cache_dir=runs/cache",
    ],
    "push": [
        "img2prompt push runs/recipe/train/vit_l_14_336_stage2 me/img2prompt-vit-l",
        "img2prompt push runs/train/lite0 me/lite0 --dry-run staged/",
    ],
    "recipe": [
        "img2prompt recipe configs/recipe/full.yaml --dry-run --gpus 8",
        "img2prompt recipe configs/recipe/full.yaml --gpus 8 \\",
        "    --set recipe.out=/data/recipe --set train.data.batch_size=32",
    ],
    "quickstart": [
        "img2prompt quickstart",
        "img2prompt quickstart --set recipe.out=runs/qs2 --set recipe.report_grid=12 \\",
        "    --set curate.sources.0.count=300",
    ],
    "validate-submission": [
        "img2prompt validate-submission submission.csv",
        "img2prompt validate-submission submission.csv --prompts prompts.csv",
    ],
}


class Verbs(TyperGroup):
    """The verbs in pipeline order (``ORDER``; a verb it does not name comes last). Typer already answers a
    mistyped verb or option with the close ones ("Did you mean", "Possible options")."""

    def list_commands(self, ctx: typer.Context) -> list[str]:
        names = super().list_commands(ctx)
        return sorted(names, key=lambda name: list(ORDER).index(name) if name in ORDER else len(ORDER))

    def invoke(self, ctx: typer.Context) -> Any:
        """A bad option value (``--batch-size 0``) is one line naming the option, the value and the allowed range,
        like every other user error, instead of a usage box."""
        try:
            return super().invoke(ctx)
        except typer.BadParameter as exc:
            raise Img2PromptError(_bad_option(exc)) from None


def _bad_option(exc: typer.BadParameter) -> str:
    """``Invalid value for '--grid': Input should be greater than or equal to 0 (got -5)``: typer checks option
    values with pydantic, whose message names the bound but not the value."""
    from pydantic import ValidationError

    cause = exc.__cause__
    got = f" (got {cause.errors()[0]['input']})" if isinstance(cause, ValidationError) else ""
    return exc.format_message() + got


app = typer.Typer(
    cls=Verbs,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Recover the prompt behind an image made by a text-to-image model.",
)


def verb(name: str) -> Any:
    """Register a verb under ``name``, in its help panel, with its examples at the end of its help."""
    examples = "\n".join(EXAMPLES[name])
    return app.command(name, rich_help_panel=ORDER[name], epilog=f"[b]Examples[/b]\n\n{examples}")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"img2prompt {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Options of the command itself (before the verb)."""


def set_option(form: str) -> Any:
    """The repeatable ``--set`` option, saying which keys the verb reads (its examples show real ones)."""
    return typer.Option("--set", help=f"Override a config key: {form} (repeatable; see the examples).")


def section(config: Path | None, overrides: list[str] | None, name: str, model: type[Section]) -> Section:
    """``sections.load_section``, imported when a verb runs (``--help`` stays instant)."""
    from img2prompt.sections import load_section

    return load_section(config, name, model, overrides)


ConfigArg = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file (see configs/).")]


DOWNLOAD_CATALOG = "configs/download/recipe.yaml"


@verb("download")
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


@verb("write-prompts")
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
    backend: Annotated[str, typer.Option(help="exact (targets) or int8 (fast, approximate).")] = "exact",
    max_tokens: Annotated[int, typer.Option(min=1, help="Padded tokens per batch.")] = 1024,
    cache_dir: Annotated[Path | None, typer.Option(help="On-disk embedding cache folder.")] = None,
) -> None:
    """Embed prompts with all-MiniLM-L6-v2 exactly as the Kaggle host did."""
    from img2prompt.embed_command import run_embed

    if kaggle is None and out is None:
        raise Img2PromptError("embed: give --kaggle OUT.csv and/or --out OUT.parquet")
    run_embed(prompts, kaggle=kaggle, out=out, model=model, backend=backend, max_tokens=max_tokens,
              cache_dir=cache_dir)


@verb("validate-submission")
def validate_submission(
    submission: Annotated[Path, typer.Argument(help="Kaggle imgId_eId,val CSV.")],
    prompts: Annotated[
        Path | None, typer.Option(help="imgId,prompt CSV: also check the id set and print the score.")
    ] = None,
) -> None:
    """Check a submission: 384 rows per image, ids in order, finite unit vectors."""
    from img2prompt.kaggle import read_prompts_csv, validate_submission
    from img2prompt.space import mean_cosine

    expected = read_prompts_csv(prompts) if prompts is not None else None
    ids, vectors = validate_submission(submission, None if expected is None else list(expected.imgId))
    typer.echo(f"{submission}: ok, {len(ids)} images x 384 dims")
    if expected is not None:
        from img2prompt.embedding import TextEmbedder

        order = {image_id: i for i, image_id in enumerate(ids)}
        truth = TextEmbedder().encode(list(expected.prompt))
        predicted = vectors[[order[i] for i in expected.imgId]]
        typer.echo(f"mean cosine to the true prompts: {mean_cosine(predicted, truth):.4f}")


@verb("predict")
def predict(
    model: Annotated[str, typer.Argument(help="Checkpoint dir, ensemble YAML, hf-hub:ORG/NAME, clip:MODEL/TAG?bank="
                                              "TABLE, or mean:TABLE / nearest:SHARDS.")],
    images: Annotated[list[str], typer.Argument(help="Image files, folders or globs; or shard folders / .tar.")],
    kaggle: Annotated[Path | None, typer.Option(help="Write the Kaggle imgId_eId,val CSV here.")] = None,
    out: Annotated[Path | None, typer.Option(help="Write the predictions Parquet here.")] = None,
    tta: Annotated[bool, typer.Option(help="Average with the mirrored image.")] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per forward pass.")] = 32,
    split: Annotated[list[str] | None, typer.Option(help="Shards only: predict this split (repeatable).")] = None,
) -> None:
    """Predict prompt embeddings for images (run under `accelerate launch` for several GPUs)."""
    from img2prompt.predict import run_predict

    if kaggle is None and out is None:
        raise Img2PromptError("predict: give --kaggle OUT.csv and/or --out OUT.parquet")
    from accelerate import PartialState

    ids, _, skipped = run_predict(model, images, out=out, kaggle=kaggle, tta=tta, batch_size=batch_size,
                                  splits=split)
    state = PartialState()
    state.wait_for_everyone()  # a rank that exits with its gloo group alive can abort in C++ teardown
    state.destroy_process_group()
    if not state.is_main_process:  # every rank holds the gathered results; one reports them
        return
    for reason in skipped:
        typer.echo(f"skipped {reason}", err=True)
    typer.echo(f"predicted {len(ids)} images, skipped {len(skipped)}")


@verb("evaluate")
def evaluate(
    predictions: Annotated[list[Path], typer.Argument(help="Predictions Parquet or Kaggle CSV files.")],
    truth: Annotated[Path, typer.Option(help="True prompts: imgId,prompt CSV, a prompt table or shards.")],
    out: Annotated[Path, typer.Option(help="Report folder (metrics.json, scores.csv, report.html).")],
    images: Annotated[list[Path] | None, typer.Option(help="Image folders or shards for the report grid.")] = None,
    bank: Annotated[Path | None, typer.Option(help="Prompt table to decode predictions with.")] = None,
    grid: Annotated[int, typer.Option(min=0, help="Images shown per model: its best half and its worst half.")] = 24,
    config: ConfigArg = None,
    set_: Annotated[list[str] | None, set_option("decode.KEY=VALUE")] = None,
) -> None:
    """Score predictions against the true prompts and the constant baseline; write a one-page HTML report."""
    from img2prompt.decode import DecodeConfig
    from img2prompt.evaluate.run import run_evaluate
    from img2prompt.provenance import SCORE_WARNING, synthetic

    decode_config = section(config, set_, "decode", DecodeConfig)
    summary = run_evaluate(predictions, truth, out, images=images or [], bank=bank, grid=grid,
                           decode_config=decode_config)
    if synthetic(source for stats in summary.values() for source in stats["by_source"]):
        typer.echo(f"warning: {SCORE_WARNING}", err=True)
    for model, stats in summary.items():  # best first
        typer.echo(f"{model}: mean cosine {stats['mean_cosine']:.4f} over {stats['images']} images "
                   f"({stats['gain_over_baseline']:+.4f} over the constant baseline's "
                   f"{stats['baseline_mean_cosine']:.4f})")
    typer.echo(f"report: {out / 'report.html'}")


@verb("ensemble")
def ensemble(
    predictions: Annotated[list[Path], typer.Argument(help="Validation predictions, one model per file.")],
    truth: Annotated[Path, typer.Option(help="True prompts: imgId,prompt CSV, a prompt table or shards.")],
    out: Annotated[Path, typer.Option(help="Ensemble YAML to write.")],
    per_dim: Annotated[bool, typer.Option(help="One weight per member and dimension.")] = False,
    tta: Annotated[bool, typer.Option(help="The members' predictions were made with --tta.")] = False,
) -> None:
    """Fit non-negative member weights (summing to 1) on validation predictions; write the ensemble YAML."""
    from img2prompt.ensemble import run_ensemble

    spec = run_ensemble(predictions, truth, out, per_dim=per_dim, tta=tta)
    for member in spec.members:
        weight = member.weight if isinstance(member.weight, float) else sum(member.weight) / len(member.weight)
        typer.echo(f"{member.model}: weight {weight:.3f}")
    for name, score in spec.member_scores.items():
        typer.echo(f"{name}: {score:.4f}")
    typer.echo(f"blend: {spec.score:.4f} over {spec.images} images -> {out}")


@verb("decode")
def decode(
    bank: Annotated[Path, typer.Argument(help="Prompt table to draw prompts and phrases from.")],
    predictions: Annotated[Path | None, typer.Option(help="Predictions Parquet or Kaggle CSV to decode.")] = None,
    text: Annotated[list[str] | None, typer.Option(help="Decode the embedding of this prompt (repeatable).")] = None,
    out: Annotated[Path | None, typer.Option(help="Write image_id,text,cosine,capped CSV here.")] = None,
    mode: Annotated[str | None, typer.Option(help="Search effort: fast or best (default: decode.mode).")] = None,
    budget: Annotated[float | None, typer.Option(min=0, help="Cap in seconds per embedding (default: none).")] = None,
    config: ConfigArg = None,
    set_: Annotated[list[str] | None, set_option("decode.KEY=VALUE")] = None,
) -> None:
    """Turn predicted embeddings into readable prompts (bank prompt + phrases + modifiers)."""
    from img2prompt.decode import DecodeConfig, run_decode

    settings = section(config, set_, "decode", DecodeConfig)
    if budget is not None:
        settings.budget_s = budget
    for row in run_decode(bank, settings, predictions=predictions, texts=text or [], out=out, mode=mode):
        typer.echo(f"{row['image_id']}\t{row['cosine']:.4f}\t{row['text']}" + ("\t(capped)" if row["capped"] else ""))


@verb("generate")
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


@verb("curate")
def curate(
    config: Annotated[Path, typer.Argument(help="YAML with a curate: section, e.g. configs/curate/shared_data.yaml.")],
    set_: Annotated[list[str] | None, set_option("curate.KEY=VALUE")] = None,
) -> None:
    """Curate prompts: read sources, clean, deduplicate, tier and split; write prompts.parquet + report."""
    from img2prompt.curate.run import CurateConfig
    from img2prompt.curate.run import curate as run_curate

    table = run_curate(section(config, set_, "curate", CurateConfig))
    typer.echo(f"wrote {table} and {table.parent / 'report.html'}")


@verb("serve")
def serve(
    model: Annotated[str, typer.Argument(help="Checkpoint directory, ensemble YAML, hf-hub:ORG/NAME, clip:MODEL/TAG "
                                              "(with --bank) or baseline spec.")],
    bank: Annotated[
        Path | None, typer.Option(help="Prompt table (Parquet) for decoded and nearest prompts.")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Interface to listen on (default: serve.host).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: serve.port; 0 picks a free one).")] = None,
    config: ConfigArg = None,
    set_: Annotated[list[str] | None, set_option("serve.KEY=VALUE")] = None,
) -> None:
    """Serve the HTTP API (POST /v1/predict) and the web page at / for a trained model."""
    from img2prompt.config import validate
    from img2prompt.decode import DecodeConfig
    from img2prompt.sections import read_config
    from img2prompt.serve.server import run_server
    from img2prompt.serve.settings import ServeConfig

    file = read_config(config, set_)
    flags = {key: value for key, value in (("host", host), ("port", port)) if value is not None}
    # the flags replace the config's values and are checked by the same rules, before the model loads
    settings = validate(ServeConfig, {**file.section("serve", ServeConfig).model_dump(), **flags}, "--host/--port",
                        "serve")
    run_server(model, settings, file.section("decode", DecodeConfig), bank)


@verb("train")
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


@verb("interrogate")
def interrogate(
    images: Annotated[list[str], typer.Argument(help="Image files, folders or globs.")],
    model: Annotated[str, typer.Option(help="Any model spec: checkpoint, ensemble YAML, hf-hub:..., clip:...")]
    = "clip:ViT-H-14/laion2b_s32b_b79k",
    bank: Annotated[Path | None, typer.Option(help="Prompt table to decode with (img2prompt curate makes one).")]
    = None,
    mode: Annotated[str | None, typer.Option(help="Search effort: fast or best (default: decode.mode).")] = None,
    json_lines: Annotated[bool, typer.Option("--json", help="One JSON object per image (prompt, cosine, "
                                             "nearest prompts, timings).")] = False,
    config: ConfigArg = None,
    set_: Annotated[list[str] | None, set_option("decode.KEY=VALUE")] = None,
) -> None:
    """Image -> prompt in one call: predict the prompt embedding, decode it; prints path<TAB>prompt per image."""
    import json

    from img2prompt.decode import DecodeConfig
    from img2prompt.interrogate import run_interrogate

    if bank is None:
        raise Img2PromptError("interrogate: give --bank PROMPTS.parquet, a prompt table to decode with (img2prompt "
                              "curate makes one; the quickstart writes runs/quickstart/bank/prompts.parquet)")
    answers, skipped, warning = run_interrogate(images, model, bank, mode=mode,
                                                decode=section(config, set_, "decode", DecodeConfig))
    if warning:
        typer.echo(f"warning: {warning}", err=True)
    for reason in skipped:
        typer.echo(f"skipped {reason}", err=True)
    for answer in answers:
        typer.echo(json.dumps(answer.to_json()) if json_lines else f"{answer.image}\t{answer.prompt}")


@verb("push")
def push(
    checkpoint: Annotated[Path, typer.Argument(help="A trained checkpoint folder.")],
    repo_id: Annotated[str, typer.Argument(help="Hugging Face Hub repository, ORG/NAME (created if needed).")],
    private: Annotated[bool, typer.Option(help="Create the repository as private.")] = False,
    dry_run: Annotated[Path | None, typer.Option(help="Write what would be uploaded (card included) here.")] = None,
) -> None:
    """Upload a checkpoint to the Hugging Face Hub with a generated model card; load it with hf-hub:ORG/NAME."""
    from img2prompt.push import push as run_push

    where = run_push(checkpoint, repo_id, private=private, dry_run=dry_run)
    typer.echo(f"{'staged' if dry_run else 'pushed'} {checkpoint} -> {where}")


@verb("recipe")
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


@verb("quickstart")
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
