"""``img2prompt quickstart``: every stage of the recipe, for real, at laptop scale, offline.

curate scenes-grammar prompts -> render scenes shards -> train two regressors -> predict the held-out splits
straight from the shards -> fit an ensemble on validation -> evaluate on test (HTML report, decoded prompts)
-> predict and decode a folder of images (the Kaggle sample when ../shared is present). Each step calls the
same function as its CLI verb and writes into ``<out>/<step>``; a step whose output already exists is skipped,
so a killed run resumes where it stopped. The same stages with the configs in configs/ run the real recipe on GPUs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
from pydantic import Field

from img2prompt.config import OUTPUT_FOLDER, StrictModel, check_paths, load_config, packaged_configs, write_resolved
from img2prompt.errors import Img2PromptError
from img2prompt.files import write_text_atomic
from img2prompt.provenance import MODEL_WARNING, SCORE_WARNING
from img2prompt.steps import Steps

DEFAULT_CONFIG = packaged_configs() / "quickstart.yaml"


class ModelRun(StrictModel):
    """One regressor of the ensemble: a name and overrides of the ``train`` section."""

    name: str
    overrides: list[str] = Field(default_factory=list)


class QuickstartConfig(StrictModel):
    out: Annotated[Path, OUTPUT_FOLDER] = Path("runs/quickstart")
    models: list[ModelRun] = Field(min_length=2)
    images: list[str] = Field(default_factory=list)  # folders/globs to predict and decode at the end
    report_grid: int = Field(24, ge=0)  # images per model in the evaluation report


def _present(sources: list) -> list:
    """The bank's sources whose files exist: a user's clone has no ../shared, and the bank is optional data."""
    from img2prompt.curate.sources import expand_paths

    kept = []
    for source in sources:
        try:
            if source.path is not None:
                expand_paths(source.path)
            kept.append(source)
        except Img2PromptError:
            print(f"[quickstart] bank: skipping {source.name} ({source.path} not found)", flush=True)
    return kept


def quickstart(config_path: Path | None = None, overrides: list[str] | None = None) -> dict[str, Any]:
    """Run the whole pipeline; returns the headline numbers (also written to ``<out>/summary.json``)."""
    from img2prompt.curate.run import curate
    from img2prompt.decode import run_decode
    from img2prompt.ensemble import run_ensemble
    from img2prompt.evaluate.run import run_evaluate
    from img2prompt.generate.run import generate
    from img2prompt.predict import run_predict
    from img2prompt.train.trainer import train

    path = config_path or DEFAULT_CONFIG
    overrides = overrides or []
    config = load_config(path, overrides)
    cfg = config.quickstart
    check_paths(cfg, "quickstart")
    out = cfg.out
    steps = Steps(out, "quickstart")
    write_resolved(cfg, "quickstart", out)

    tables = {}
    for section, folder in (("curate", "prompts"), ("bank", "bank")):
        ccfg = config.section(section)
        ccfg.out = out / folder
        if section == "bank":
            ccfg.sources = _present(ccfg.sources)
        tables[section] = ccfg.out / "prompts.parquet"
        steps(f"curate {folder}", lambda ccfg=ccfg: curate(ccfg))

    shards = out / "shards"
    gcfg = config.generate
    gcfg.prompts, gcfg.out = tables["curate"], shards
    steps("generate scenes shards", lambda: generate(gcfg))

    models = {run.name: out / "models" / run.name for run in cfg.models}
    for run in cfg.models:
        tcfg = load_config(path, [*overrides, *(f"train.{o}" for o in run.overrides)]).train
        tcfg.out = str(models[run.name])
        tcfg.data.shards = [str(shards)]
        steps(f"train {run.name}", lambda tcfg=tcfg: train(tcfg))

    baselines = {"mean_baseline": f"mean:{tables['curate']}", "nearest_baseline": f"nearest:{shards}"}
    specs = {**{name: str(folder) for name, folder in models.items()}, **baselines}
    predictions = {}
    for name, spec in specs.items():
        for split in ("val", "test"):
            if name in baselines and split == "val":  # only the trained models are ensemble members
                continue
            target = predictions[name, split] = out / "predictions" / f"{name}-{split}.parquet"
            steps(f"predict {name} {split}", lambda spec=spec, split=split, target=target: run_predict(
                spec, [shards], out=target, splits=[split]))

    ensemble = out / "ensemble.yaml"
    steps("fit ensemble on val", lambda: run_ensemble(
        [predictions[name, "val"] for name in models], shards, ensemble))
    predictions["ensemble", "test"] = out / "predictions" / "ensemble-test.parquet"
    steps("predict ensemble test", lambda: run_predict(
        str(ensemble), [shards], out=predictions["ensemble", "test"], splits=["test"]))

    dcfg = config.decode
    report = out / "report"
    test_files = [file for (_, split), file in predictions.items() if split == "test"]
    steps("evaluate on test", lambda: run_evaluate(
        test_files, shards, report, images=[shards], bank=tables["bank"], grid=cfg.report_grid, decode_config=dcfg))

    inputs = [p for p in cfg.images if Path(p).exists()]
    decoded = out / "decoded.csv"
    if inputs:
        yours = out / "predictions" / "your-images.parquet"
        steps("predict your images", lambda: run_predict(str(ensemble), inputs, out=yours,
                                                         kaggle=out / "submission.csv"))
        steps("decode your images", lambda: run_decode(tables["bank"], dcfg, predictions=yours, out=decoded))

    metrics = json.loads((report / "metrics.json").read_text())
    names = {str(pd.read_parquet(file, columns=["model"]).model.iloc[0]): name
             for (name, split), file in predictions.items() if split == "test"}
    summary = {
        "note": f"each model here {MODEL_WARNING}; {SCORE_WARNING}",
        "test_mean_cosine": {names.get(model, model): round(m["mean_cosine"], 4) for model, m in metrics.items()},
        "timings_s": steps.timings,
        "report": str(report / "report.html"),
        "ensemble": str(ensemble),
        "decoded": str(decoded) if inputs else None,
        "submission": str(out / "submission.csv") if inputs else None,
    }
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2))
    return summary
