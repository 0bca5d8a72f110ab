"""``img2prompt quickstart``: every stage of the recipe, for real, at laptop scale, offline.

curate scenes-grammar prompts -> render scenes shards -> train two regressors -> predict held-out images
-> fit an ensemble on validation -> evaluate on test (HTML report, decoded prompts) -> predict and decode a
folder of images (the Kaggle sample when ../shared is present). Each step calls the same function as its CLI
verb and writes into ``<out>/<step>``; a step whose output already exists is skipped, so a killed run
resumes where it stopped. The same stages with the configs in configs/ run the real recipe on GPUs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import Field

from img2prompt.config import StrictModel, load_section, write_resolved
from img2prompt.errors import fail
from img2prompt.files import write_text_atomic

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "quickstart.yaml"


class ModelRun(StrictModel):
    """One regressor of the ensemble: a name and overrides of the ``train`` section."""

    name: str
    overrides: list[str] = Field(default_factory=list)


class QuickstartConfig(StrictModel):
    out: Path = Path("runs/quickstart")
    models: list[ModelRun] = Field(min_length=2)
    images: list[str] = Field(default_factory=list)  # folders/globs to predict and decode at the end
    decode_budget_s: float = 0.5
    report_grid: int = 24


class Steps:
    """Runs pipeline steps with a heading and a timing each. A finished step leaves a marker in
    ``<out>/.steps`` and is skipped next time, which is what makes the whole quickstart resumable."""

    def __init__(self, out: Path):
        self.markers = out / ".steps"
        self.markers.mkdir(parents=True, exist_ok=True)
        self.timings: dict[str, float] = {}

    def __call__(self, name: str, work: Callable[[], Any]) -> None:
        marker = self.markers / (name.replace(" ", "_") + ".done")
        if marker.exists():
            self.timings[name] = float(marker.read_text())
            print(f"[quickstart] {name}: already done ({self.timings[name]} s)", flush=True)
            return
        print(f"[quickstart] {name} ...", flush=True)
        start = time.perf_counter()
        work()
        self.timings[name] = round(time.perf_counter() - start, 1)
        write_text_atomic(marker, f"{self.timings[name]}\n")
        print(f"[quickstart] {name}: {self.timings[name]} s", flush=True)


def export_split(shards: Path, split: str, folder: Path) -> Path:
    """Write the images of one split as PNG files plus ``truth.csv`` (imgId,prompt) into ``folder``."""
    from img2prompt.shards import find_shards, iter_samples

    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for sample in iter_samples(find_shards(shards)):
        if sample.meta.get("split") != split:
            continue
        sample.image.save(folder / f"{sample.key}.png")
        rows.append((sample.key, sample.meta["prompt"]))
    if not rows:
        raise fail(shards, f"no {split!r} samples to evaluate on")
    return write_text_atomic(folder / "truth.csv", pd.DataFrame(rows, columns=["imgId", "prompt"]).to_csv(index=False))


def _present(sources: list) -> list:
    """The bank's sources whose files exist: a user's clone has no ../shared, and the bank is optional data."""
    import glob

    kept = [s for s in sources if s.path is None or glob.glob(s.path)]
    for source in sources:
        if source not in kept:
            print(f"[quickstart] bank: skipping {source.name} ({source.path} not found)", flush=True)
    return kept


def quickstart(config_path: Path | None = None, overrides: list[str] | None = None) -> dict[str, Any]:
    """Run the whole pipeline; returns the headline numbers (also written to ``<out>/summary.json``)."""
    from img2prompt.curate.run import CurateConfig, curate
    from img2prompt.decode import DecodeConfig, run_decode
    from img2prompt.ensemble import run_ensemble
    from img2prompt.evaluate.run import run_evaluate
    from img2prompt.generate.run import GenerateConfig, generate
    from img2prompt.predict import run_predict
    from img2prompt.train.config import TrainConfig
    from img2prompt.train.trainer import train

    path = config_path or DEFAULT_CONFIG
    overrides = overrides or []
    cfg = load_section(QuickstartConfig, "quickstart", path, overrides)
    out = cfg.out
    steps = Steps(out)
    write_resolved(cfg, "quickstart", out)

    tables = {}
    for section, folder in (("curate", "prompts"), ("bank", "bank")):
        ccfg = load_section(CurateConfig, section, path, overrides)
        ccfg.out = out / folder
        if section == "bank":
            ccfg.sources = _present(ccfg.sources)
        tables[section] = ccfg.out / "prompts.parquet"
        steps(f"curate {folder}", lambda ccfg=ccfg: curate(ccfg))

    shards = out / "shards"
    gcfg = load_section(GenerateConfig, "generate", path, overrides)
    gcfg.prompts, gcfg.out = tables["curate"], shards
    steps("generate scenes shards", lambda: generate(gcfg))

    models = {run.name: out / "models" / run.name for run in cfg.models}
    for run in cfg.models:
        tcfg = load_section(TrainConfig, "train", path, [*overrides, *(f"train.{o}" for o in run.overrides)])
        tcfg.out = str(models[run.name])
        tcfg.data.shards = [str(shards)]
        steps(f"train {run.name}", lambda tcfg=tcfg: train(tcfg))

    images = {split: out / "heldout" / split for split in ("val", "test")}
    truth = {split: folder / "truth.csv" for split, folder in images.items()}
    for split, folder in images.items():
        steps(f"export {split} images", lambda split=split, folder=folder: export_split(shards, split, folder))

    baselines = {"mean_baseline": f"mean:{tables['curate']}", "nearest_baseline": f"nearest:{shards}"}
    specs = {**{name: str(folder) for name, folder in models.items()}, **baselines}
    predictions = {}
    for name, spec in specs.items():
        for split, folder in images.items():
            if name in baselines and split == "val":  # only the trained models are ensemble members
                continue
            target = predictions[name, split] = out / "predictions" / f"{name}-{split}.parquet"
            steps(f"predict {name} {split}", lambda spec=spec, folder=folder, target=target: run_predict(
                spec, [folder], out=target))

    ensemble = out / "ensemble.yaml"
    steps("fit ensemble on val", lambda: run_ensemble(
        [predictions[name, "val"] for name in models], truth["val"], ensemble))
    predictions["ensemble", "test"] = out / "predictions" / "ensemble-test.parquet"
    steps("predict ensemble test", lambda: run_predict(
        str(ensemble), [images["test"]], out=predictions["ensemble", "test"]))

    dcfg = load_section(DecodeConfig, "decode", path, overrides)
    dcfg.budget_s = cfg.decode_budget_s
    report = out / "report"
    test_files = [file for (_, split), file in predictions.items() if split == "test"]
    steps("evaluate on test", lambda: run_evaluate(
        test_files, truth["test"], report, images=sorted(images["test"].glob("*.png")), bank=tables["bank"],
        grid=cfg.report_grid, decode_config=dcfg))

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
        "test_mean_cosine": {names.get(model, model): round(m["mean_cosine"], 4) for model, m in metrics.items()},
        "timings_s": steps.timings,
        "report": str(report / "report.html"),
        "ensemble": str(ensemble),
        "decoded": str(decoded) if inputs else None,
        "submission": str(out / "submission.csv") if inputs else None,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
