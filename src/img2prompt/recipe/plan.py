"""The chain of a recipe: every step is the ``img2prompt`` command a user would type, built from the stage configs.

download -> write-prompts -> curate (and the bank) -> generate (one shard set per config) -> train each model's
stages in order -> predict every model, member and baseline on the held-out set's val/test splits straight from
the shards -> fit the ensemble on val -> predict and evaluate test -> predict the images (submission.csv, validated)
-> decode them. Before anything runs, the chain is checked: every config must read exactly what the one before it
writes (the curated table, the shard sets, the stage-1 checkpoint), so a config that stops chaining fails in a
line, not after a day of GPU time.

``--set SECTION.KEY=VALUE`` reaches every step whose config has that section (``bank.*`` the bank's curation);
``recipe.out`` moves the whole chain (each step is told where its inputs and outputs moved).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from img2prompt.config import StrictModel, did_you_mean, override_key
from img2prompt.curate.config import CurateConfig
from img2prompt.errors import Img2PromptError, fail
from img2prompt.generate.run import GenerateConfig
from img2prompt.models.specs import map_paths, parse
from img2prompt.recipe.config import RecipeConfig
from img2prompt.sections import read_config
from img2prompt.train.config import TrainConfig

Launcher = Literal["none", "torchrun", "accelerate"]
Section = TypeVar("Section", bound=StrictModel)
HELD_OUT = ("val", "test")
# The keys through which each stage's config reads and writes the chain's files (moved with ``recipe.out``).
WIRING = {"curate": ("out",), "generate": ("prompts", "out"), "write_prompts": ("out",),
          "train": ("out", "init_from", "data.shards", "data.val_shards")}


@dataclass(frozen=True)
class Step:
    """One command of the chain: an ``img2prompt`` verb line and the launcher it needs on several GPUs."""

    name: str
    argv: list[str]
    launcher: Launcher = "none"
    note: str = ""  # said after the command by --dry-run (what a download fetches)

    def command(self, gpus: int) -> list[str]:
        if gpus <= 1 or self.launcher == "none":
            return ["img2prompt", *self.argv]
        if self.launcher == "torchrun":
            return ["torchrun", "--standalone", "--nproc_per_node", str(gpus), "--no-python", "img2prompt",
                    *self.argv]
        return ["accelerate", "launch", "--multi_gpu", "--num_processes", str(gpus), "-m", "img2prompt", *self.argv]


@dataclass
class Chain:
    """The recipe being planned: its config, the user's overrides and how the chain's paths move."""

    recipe: RecipeConfig
    source: str
    overrides: list[str]
    root: Path  # the out the recipe file ships with: its stage configs write under it
    steps: list[Step] = field(default_factory=list)
    prefixes: set[str] = field(default_factory=lambda: {"recipe"})  # override prefixes some step reads

    def move(self, value: Any) -> Any:
        """A path (or list of paths) of a stage config, moved from the shipped root to ``recipe.out``."""
        if isinstance(value, list):
            return [self.move(v) for v in value]
        if value is None or self.recipe.out == self.root:
            return value
        path = Path(value)
        return str(self.recipe.out / path.relative_to(self.root)) if path.is_relative_to(self.root) else value

    def stage(self, path: str, prefix: str, section: str, model: type[Section]) -> tuple[Section, list[str]]:
        """A step's config as the chain runs it, and the ``--set`` arguments that make it so: the user's overrides
        of ``prefix`` (given to the file's ``section``) and the chain's paths moved to ``recipe.out``."""
        self.prefixes.add(prefix)
        given = [f"{section}.{item.split('.', 1)[1]}" for item in self.overrides if item.split(".", 1)[0] == prefix]
        config = read_config(path, given).section(section, model)
        moved = [f"{section}.{key}={_flow(self.move(value))}" for key in WIRING.get(section, ())
                 if (value := attrgetter(key)(config)) is not None and _plain(self.move(value)) != _plain(value)]
        if moved:
            config = read_config(path, [*given, *moved]).section(section, model)
        return config, [arg for item in (*given, *moved) for arg in ("--set", item)]

    def add(self, name: str, argv: list[str], launcher: Launcher = "none", note: str = "") -> None:
        self.steps.append(Step(name, argv, launcher, note))


def _plain(value: Any) -> Any:
    return [str(v) for v in value] if isinstance(value, list) else str(value)


def _flow(value: Any) -> str:
    """A value as ``--set`` parses it (YAML flow style, one line)."""
    return yaml.safe_dump(_plain(value), default_flow_style=True, width=10**6).strip().removesuffix("\n...")


def _slug(spec: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", spec).strip("_")


def plan(path: str | Path, overrides: list[str]) -> tuple[RecipeConfig, list[Step]]:
    """The recipe's config and its chain of steps, after checking that each config reads what the one before writes
    and that every override reaches some step."""
    for item in overrides:  # each step reads the overrides of its section: SECTION.KEY=VALUE
        if "." not in override_key(item):
            raise Img2PromptError(f"--set {item!r}: expected SECTION.KEY=VALUE, e.g. train.optim.lr=1e-4")
    recipe_overrides = [item for item in overrides if item.split(".", 1)[0] == "recipe"]
    shipped = read_config(path).section("recipe", RecipeConfig).out
    chain = Chain(read_config(path, recipe_overrides).section("recipe", RecipeConfig), str(path), overrides, shipped)
    table, bank = _curation(chain, path)
    truth, written = _generation(chain, table)
    final = _evaluation(chain, path, _training(chain, table, written), truth, table, bank)
    _images(chain, path, final, bank)
    for item in overrides:
        prefix = item.split(".", 1)[0]
        if prefix not in chain.prefixes:
            raise Img2PromptError(f"--set {item!r}: no step of {path} reads a {prefix!r} section"
                                  f"{did_you_mean(prefix, chain.prefixes)} (these do: "
                                  f"{', '.join(sorted(chain.prefixes))})")
    return chain.recipe, chain.steps


def _curation(chain: Chain, path: str | Path) -> tuple[Path, Path | None]:
    """download, write-prompts, curate and the bank's curation; returns the curated table and the bank's."""
    recipe = chain.recipe
    curate, sets = chain.stage(recipe.curate, "curate", "curate", CurateConfig)
    _inputs(chain, curate)
    chain.add("curate", ["curate", recipe.curate, *sets])
    table = Path(curate.out) / "prompts.parquet"
    if recipe.bank is None:
        return table, None
    bank, sets = chain.stage(recipe.bank, "bank", "curate", CurateConfig)
    chain.add("curate bank", ["curate", recipe.bank, *sets])
    return table, Path(bank.out) / "prompts.parquet"


def _inputs(chain: Chain, curate: CurateConfig) -> None:
    """Steps 0: download what curate and the images need, write the LLM tier curate reads."""
    from img2prompt.curate.write_prompts import WritePromptsConfig

    recipe = chain.recipe
    paths = {s.name: s.path if isinstance(s.path, list) else [s.path] for s in curate.sources if s.path is not None}
    if recipe.write_prompts is not None:
        writer, sets = chain.stage(recipe.write_prompts, "write_prompts", "write_prompts", WritePromptsConfig)
        readers = [s for s in curate.sources if any(fnmatch.fnmatchcase(str(writer.out), p)
                                                    for p in paths.get(s.name, []))]
        if not readers or not all(s.optional for s in readers):
            raise fail(recipe.write_prompts, f"write_prompts.out is {writer.out}, which no optional source of "
                                             f"{recipe.curate} reads")
        paths = {name: p for name, p in paths.items() if name not in {s.name for s in readers}}
        chain.add("write prompts", ["write-prompts", recipe.write_prompts, *sets])
    if recipe.download is not None:
        _download(chain, curate, paths)


def _download(chain: Chain, curate: CurateConfig, paths: dict[str, list[str]]) -> None:
    from img2prompt.download.catalog import DownloadConfig, corpora_for
    from img2prompt.download.run import plan as download_plan
    from img2prompt.download.run import total_line

    recipe = chain.recipe
    catalog, sets = chain.stage(recipe.download, "download", "download", DownloadConfig)
    optional = {s.name for s in curate.sources if s.optional}
    names = corpora_for([p for ps in paths.values() for p in ps] + recipe.images, catalog)
    needed = set(corpora_for([p for name, ps in paths.items() if name not in optional for p in ps] + recipe.images,
                             catalog))
    flags = [arg for name in names if name not in needed for arg in ("--optional", name)]
    note = total_line(download_plan(catalog, {name: catalog.corpora[name] for name in names}))
    chain.steps.insert(0, Step("download", ["download", *names, "--config", recipe.download, *flags, *sets],
                               note=note))


def _generation(chain: Chain, table: Path) -> tuple[str, set[Path]]:
    """One generate step per shard set; returns the set that holds the val and test splits, and every set."""
    held_out, written = [], set()
    for path in chain.recipe.generate:
        generate, sets = chain.stage(path, "generate", "generate", GenerateConfig)
        if Path(generate.prompts) != table:
            raise fail(path, f"generate.prompts is {generate.prompts}, but {chain.recipe.curate} writes {table}")
        chain.add(f"generate {Path(generate.out).name}", ["generate", path, *sets], "torchrun")
        written.add(Path(generate.out))
        if set(HELD_OUT) <= set(generate.splits):
            held_out.append(str(generate.out))
    if len(held_out) != 1:
        raise fail(chain.source, f"exactly one generate config must draw the val and test splits, got {len(held_out)}")
    return held_out[0], written


def _training(chain: Chain, table: Path, written: set[Path]) -> dict[str, str]:
    """Each model's stages, stage 2 from stage 1; returns name -> the spec of every ensemble member."""
    recipe = chain.recipe
    finals = {}
    for spec in recipe.members:  # untrained members come first
        moved = map_paths(spec, lambda p: str(chain.move(p)))
        bank = parse(moved).params.get("bank")
        if bank is not None and Path(bank) != table and not Path(bank).is_file():
            raise fail(chain.source, f"member {spec}: its bank {bank} is neither {table} (which curate writes) "
                                     "nor a file")
        finals[_slug(spec.partition("?")[0])] = moved
    for name, stages in recipe.models.items():
        previous: Path | None = None
        for number, path in enumerate(stages, start=1):
            train, sets = chain.stage(path, "train", "train", TrainConfig)
            start = Path(train.init_from) if train.init_from else None
            if start != previous:
                wanted = f"init_from: {previous}" if previous else "no init_from (it is the first stage)"
                raise fail(path, f"stage {number} of {name} has init_from {train.init_from}; it needs {wanted}")
            for shards in (*train.data.shards, *train.data.val_shards):
                if Path(shards) not in written:
                    raise fail(path, f"reads shards {shards}, which no generate config of the recipe writes "
                                     f"({', '.join(map(str, sorted(written)))})")
            chain.add(f"train {name} stage {number}", ["train", path, *sets], "accelerate")
            previous = Path(train.out)
        finals[name] = str(previous)
    return finals


def _decode_args(chain: Chain, path: str | Path) -> list[str]:
    """``-c`` the recipe file when it has a ``decode:`` section, and the user's ``decode.*`` overrides."""
    chain.prefixes.add("decode")
    config = ["-c", str(path)] if "decode" in read_config(path) else []
    return [*config, *(arg for item in chain.overrides if item.startswith("decode.") for arg in ("--set", item))]


def _evaluation(chain: Chain, path: str | Path, finals: dict[str, str], truth: str, table: Path,
                bank: Path | None) -> str:
    """Predict val and test, fit the ensemble, score test with the baselines; returns the final model's spec."""
    out = chain.recipe.out
    predictions = {(name, split): str(out / "predictions" / f"{name}-{split}.parquet")
                   for name in finals for split in HELD_OUT}
    for (name, split), target in predictions.items():
        chain.add(f"predict {name} {split}", ["predict", finals[name], truth, "--split", split, "--out", target],
                  "accelerate")
    size = chain.recipe.nearest_size
    baselines = {"mean": f"mean:{table}", "nearest": f"nearest:{truth}" + (f"?size={size}" if size else "")}
    scored = [predictions[name, "test"] for name in finals]
    for kind in chain.recipe.baselines:
        scored.append(str(out / "predictions" / f"{kind}_baseline-test.parquet"))
        chain.add(f"predict {kind} baseline test", ["predict", baselines[kind], truth, "--split", "test", "--out",
                                                    scored[-1]], "accelerate")
    final = next(iter(finals.values()))
    if len(finals) > 1:
        final = str(out / "ensemble.yaml")
        chain.add("fit ensemble", ["ensemble", *(predictions[n, "val"] for n in finals), "--truth", truth,
                                   "--out", final])
        scored.append(str(out / "predictions" / "ensemble-test.parquet"))
        chain.add("predict ensemble test", ["predict", final, truth, "--split", "test", "--out", scored[-1]],
                  "accelerate")
    report = ["--bank", str(bank)] if bank is not None else []
    chain.add("evaluate test", ["evaluate", *scored, "--truth", truth, "--out", str(out / "report"), "--images",
                                truth, "--grid", str(chain.recipe.report_grid), *report, *_decode_args(chain, path)])
    return final


def _images(chain: Chain, path: str | Path, final: str, bank: Path | None) -> None:
    """Predict the images with the final model (submission.csv, validated) and decode them with the bank."""
    recipe, out = chain.recipe, chain.recipe.out
    fetched = bool(chain.steps) and chain.steps[0].name == "download" and "kaggle" in chain.steps[0].argv
    images = [p for p in recipe.images if fetched or Path(p).exists() or not recipe.images_optional]
    missing = [p for p in images if not fetched and not Path(p).exists()]
    if missing:
        raise fail(missing[0], "recipe.images: no such file or folder (the images to predict and submit for)")
    if not images:
        return
    predictions, submission = str(out / "predictions" / "images.parquet"), str(out / "submission.csv")
    chain.add("predict images", ["predict", final, *images, "--out", predictions, "--kaggle", submission],
              "accelerate")
    chain.add("validate submission", ["validate-submission", submission])
    if bank is not None:
        chain.add("decode images", ["decode", str(bank), "--predictions", predictions, "--out",
                                    str(out / "decoded.csv"), *_decode_args(chain, path)])
