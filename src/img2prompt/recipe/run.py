"""``img2prompt recipe`` and ``img2prompt quickstart``: run a recipe's chain, resumably, and summarise it.

With one GPU (or none) every step runs in this process through the CLI, so the packages load once; with ``--gpus N``
(N > 1) each step runs under its launcher (``torchrun`` for generate, ``accelerate launch`` for train and predict).
``--dry-run`` prints every command. Every stage resumes itself and each finished step leaves a marker, so a killed
recipe started again resumes where it stopped. At the end ``<out>/summary.json`` holds the test scores by name.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from img2prompt.config import check_paths, packaged_configs, write_resolved
from img2prompt.errors import Img2PromptError
from img2prompt.files import write_text_atomic
from img2prompt.provenance import RUN_WARNING, synthetic
from img2prompt.recipe.config import RecipeConfig
from img2prompt.recipe.plan import Step, plan
from img2prompt.steps import Steps

QUICKSTART = packaged_configs() / "recipe" / "quickstart.yaml"


def run_recipe(path: str | Path, overrides: list[str], *, gpus: int, dry_run: bool,
               run_in_process: Callable[[list[str]], None]) -> dict[str, Any] | None:
    """Plan the chain, then print it (``dry_run``) or run each unfinished step; returns the summary (None for a
    dry run)."""
    recipe, steps = plan(path, overrides)
    if not dry_run:
        check_paths(recipe, "recipe")
    markers = Steps(recipe.out, "recipe")
    for step in steps:
        line = shlex.join(step.command(gpus))
        if dry_run:
            note = "done" if markers.done(step.name) else step.note
            print(f"{line}{f'   # {note}' if note else ''}")
            continue
        if step is steps[0]:
            write_resolved(recipe, "recipe", recipe.out)
        markers(step.name, lambda step=step, line=line: _run(step, line, gpus, run_in_process))
    return None if dry_run else summarise(recipe, steps, markers.timings)


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


def summarise(recipe: RecipeConfig, steps: list[Step], timings: dict[str, float]) -> dict[str, Any]:
    """The headline numbers, by the recipe's names, written to ``<out>/summary.json``."""
    import pandas as pd

    out = recipe.out
    report = out / "report"
    tested = {step.name.removeprefix("predict ").removesuffix(" test"): step.argv[step.argv.index("--out") + 1]
              for step in steps if step.name.startswith("predict ") and step.name.endswith(" test")}
    names = {str(pd.read_parquet(file, columns=["model"]).model.iloc[0]): name.replace(" ", "_")
             for name, file in tested.items()}
    metrics = json.loads((report / "metrics.json").read_text())
    sources = [source for stats in metrics.values() for source in stats["by_source"]]
    done = {step.name for step in steps}
    summary = {
        "note": RUN_WARNING if synthetic(sources) else None,
        "test_mean_cosine": {names.get(model, model): round(m["mean_cosine"], 4) for model, m in metrics.items()},
        "timings_s": timings,
        "report": str(report / "report.html"),
        "ensemble": str(out / "ensemble.yaml") if "fit ensemble" in done else None,
        "decoded": str(out / "decoded.csv") if "decode images" in done else None,
        "submission": str(out / "submission.csv") if "predict images" in done else None,
    }
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2))
    return summary
