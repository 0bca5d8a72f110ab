"""The verbs that use a model: predict, ensemble, evaluate, decode, interrogate, serve, push, fetch,
validate-submission."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from img2prompt.cli.app import ConfigArg, ModeOption, section, set_option, verb
from img2prompt.errors import Img2PromptError


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
    written = " and ".join(str(path) for path in (out, kaggle) if path is not None)
    typer.echo(f"predicted {len(ids)} images, skipped {len(skipped)}: wrote {written}")


@verb("ensemble", needs=("train",))
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


@verb("decode")
def decode(
    bank: Annotated[Path, typer.Argument(help="Prompt table to draw prompts and phrases from.")],
    predictions: Annotated[Path | None, typer.Option(help="Predictions Parquet or Kaggle CSV to decode.")] = None,
    text: Annotated[list[str] | None, typer.Option(help="Decode the embedding of this prompt (repeatable).")] = None,
    out: Annotated[Path | None, typer.Option(help="Write image_id,text,cosine,capped CSV here.")] = None,
    mode: ModeOption = None,
    budget: Annotated[float | None, typer.Option(min=0, help="Cap in seconds per embedding (default: none).")] = None,
    config: ConfigArg = None,
    set_: Annotated[list[str] | None, set_option("decode.KEY=VALUE")] = None,
) -> None:
    """Turn predicted embeddings into readable prompts (bank prompt + phrases + modifiers)."""
    from img2prompt.decode import DecodeConfig
    from img2prompt.decode_command import run_decode

    settings = section(config, set_, "decode", DecodeConfig)
    if budget is not None:
        settings.budget_s = budget
    for row in run_decode(bank, settings, predictions=predictions, texts=text or [], out=out, mode=mode):
        typer.echo(f"{row['image_id']}\t{row['cosine']:.4f}\t{row['text']}" + ("\t(capped)" if row["capped"] else ""))


@verb("interrogate")
def interrogate(
    images: Annotated[list[str], typer.Argument(help="Image files, folders or globs.")],
    model: Annotated[str, typer.Option(help="Any model spec: a checkpoint folder, an ensemble YAML (the quickstart's: "
                                            "runs/quickstart/ensemble.yaml), hf-hub:ORG/NAME, clip:MODEL/TAG.")],
    bank: Annotated[Path | None, typer.Option(help="Prompt table to decode with (default: the model's own, for a "
                                                   "pushed model; img2prompt curate makes one).")] = None,
    mode: ModeOption = None,
    json_lines: Annotated[bool, typer.Option("--json", help="One JSON answer per line (prompt, cosine, nearest "
                                             "prompts, embedding, warning, timings): the HTTP API's answer.")] = False,
    config: ConfigArg = None,
    set_: Annotated[list[str] | None, set_option("decode.KEY=VALUE")] = None,
) -> None:
    """Image -> prompt in one call: predict the prompt embedding, decode it; prints path<TAB>prompt per image."""
    from img2prompt.decode import DecodeConfig
    from img2prompt.interrogate import run_interrogate

    answers, skipped = run_interrogate(images, model, bank, mode=mode,
                                       decode=section(config, set_, "decode", DecodeConfig))
    if answers[0].warning:
        typer.echo(f"warning: {answers[0].warning}", err=True)
    for reason in skipped:
        typer.echo(f"skipped {reason}", err=True)
    for answer in answers:
        typer.echo(answer.model_dump_json() if json_lines else f"{answer.image}\t{answer.prompt}")


@verb("serve", needs=("serve",))
def serve(
    model: Annotated[str, typer.Argument(help="Checkpoint directory, ensemble YAML, hf-hub:ORG/NAME, clip:MODEL/TAG "
                                              "(with --bank) or baseline spec.")],
    bank: Annotated[Path | None, typer.Option(help="Prompt table for decoded and nearest prompts (default: the "
                                                   "model's own, for a pushed model; none: embeddings only).")] = None,
    host: Annotated[str | None, typer.Option(help="Interface to listen on (default: serve.host).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: serve.port; 0 picks a free one).")] = None,
    config: ConfigArg = None,
    set_: Annotated[list[str] | None, set_option("serve.KEY=VALUE")] = None,
) -> None:
    """Serve the HTTP API (POST /v1/predict) and the web page at / for a trained model."""
    from img2prompt.config import validate
    from img2prompt.decode import DecodeConfig
    from img2prompt.models.specs import parse
    from img2prompt.sections import read_config
    from img2prompt.serve.server import run_server
    from img2prompt.serve.settings import ServeConfig

    file = read_config(config, set_)
    flags = {key: value for key, value in (("host", host), ("port", port)) if value is not None}
    # the flags replace the config's values and are checked by the same rules, before the model loads
    settings = validate(ServeConfig, {**file.section("serve", ServeConfig).model_dump(), **flags}, "--host/--port",
                        "serve")
    run_server(parse(model), settings, file.section("decode", DecodeConfig), bank)


@verb("push")
def push(
    checkpoint: Annotated[Path, typer.Argument(help="A trained checkpoint folder.")],
    repo_id: Annotated[str, typer.Argument(help="Hugging Face Hub repository, ORG/NAME (created if needed).")],
    bank: Annotated[str | None, typer.Option(help="The prompt bank the model decodes with, uploaded with it and its "
                                                  "phrase dictionary: a prompt table, or a table on the Hub, "
                                                  "hf://datasets/ORG/NAME@REVISION/PATH (then only referenced).")]
    = None,
    private: Annotated[bool, typer.Option(help="Create the repository as private.")] = False,
    dry_run: Annotated[Path | None, typer.Option(help="Write what would be uploaded (card included) here.")] = None,
    config: ConfigArg = None,
    set_: Annotated[list[str] | None, set_option("decode.KEY=VALUE, for the bank's dictionary")] = None,
) -> None:
    """Upload a checkpoint, its prompt bank and a generated model card to the Hugging Face Hub; load it with
    hf-hub:ORG/NAME (no bank needed)."""
    from img2prompt.decode import DecodeConfig
    from img2prompt.push import push as run_push

    where = run_push(checkpoint, repo_id, bank=bank, private=private, dry_run=dry_run,
                     decode=section(config, set_, "decode", DecodeConfig))
    typer.echo(f"{'staged' if dry_run else 'pushed'} {checkpoint} -> {where}")


@verb("fetch")
def fetch(
    model: Annotated[str, typer.Argument(help="clip:MODEL/TAG, hf-hub:ORG/NAME[@REVISION], or an ensemble YAML naming "
                                              "them.")],
) -> None:
    """Download what a model needs from the Hub (weights, checkpoint, prompt bank), sizes first, to work offline
    afterwards."""
    from img2prompt.fetch import fetch as run_fetch

    run_fetch(model, say=typer.echo)


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
