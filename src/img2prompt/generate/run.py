"""The generation stage: prompt table in, WebDataset image shards out (DESIGN.md contracts 1 and 2).

Every prompt gets ``images_per_prompt[tier]`` images (HQ 2, LQ 1), image ``k`` of a prompt seeded from
(prompt_id, k). The sample list is cut into fixed shards (``shard-000000.tar`` ...), so a shard's content is
a pure function of the table and the config. Under ``torchrun``/``accelerate launch`` each rank takes the
shards ``i % WORLD_SIZE == RANK`` (no collectives are needed, so no process group is created); a shard is
written to a ``.tmp`` file, renamed and recorded in ``manifest.jsonl``. A run killed at any point resumes by
skipping the recorded shards and redrawing the rest: no sample is lost and none is duplicated.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Protocol

import numpy as np
from PIL import Image
from pydantic import Field, model_validator

from img2prompt.config import INPUT, OUTPUT_FOLDER, Seed, StrictModel, check_paths, write_resolved
from img2prompt.errors import fail
from img2prompt.files import make_folder, write_text_atomic
from img2prompt.generate.diffusion import DiffusionConfig
from img2prompt.generate.seeds import sample_seed
from img2prompt.images import MAX_SIDE
from img2prompt.shards import Manifest, Sample, sample_key, write_shard

PLAN_NAME = "plan.json"


class ScenesConfig(StrictModel):
    """``generate.scenes``: the pictograph set, ``openmoji`` (packaged font), a colour font or a PNG folder."""

    pictographs: str = "openmoji"


class GenerateConfig(StrictModel):
    """The ``generate:`` section of a config file."""

    prompts: Annotated[Path, INPUT] = Path("runs/curate/prompts.parquet")
    out: Annotated[Path, OUTPUT_FOLDER] = Path("runs/generate")
    backend: Literal["scenes", "diffusion"] = "scenes"
    size: int = Field(512, ge=8, le=MAX_SIDE)  # pixels per side of the drawn images
    images_per_prompt: dict[str, Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: {"hq": 2, "lq": 1})
    splits: list[str] = Field(default_factory=lambda: ["train", "val", "test"])
    tiers: list[str] | None = None  # None: every tier; the recipe writes its hq and lq shard sets apart
    limit: int | None = Field(None, ge=1)
    samples_per_shard: int = Field(1000, ge=1)
    image_format: Literal["webp", "png", "jpg"] = "webp"
    fast_encode: bool = True
    seed: Seed = 0
    scenes: ScenesConfig = Field(default_factory=ScenesConfig)
    diffusion: DiffusionConfig = Field(default_factory=DiffusionConfig)

    @model_validator(mode="after")
    def _latent_size(self) -> GenerateConfig:
        if self.backend == "diffusion" and self.size % 8:
            raise ValueError(f"size {self.size}: Stable Diffusion draws sides that are multiples of 8")
        return self


# Settings that change how fast images are made, not which images: a run may resume with other values.
_RUN_ONLY = {"diffusion": {"device", "batch_size", "compile"}}


class ImageGenerator(Protocol):
    """A backend: draws one image per (prompt, seed); ``settings`` go into every sample's json."""

    name: str
    batch_size: int
    settings: dict

    def generate(self, prompts: list[str], seeds: list[int]) -> list[Image.Image]: ...


@dataclass(frozen=True)
class Item:
    """One image to draw: row ``row`` of the prompt table, its ``k``-th image."""

    row: int
    k: int
    seed: int


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes, as torchrun / accelerate launch set them."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def plan_items(frame, cfg: GenerateConfig, table_path: Path) -> list[Item]:
    """The ordered list of images to draw: table order, the chosen splits and tiers, ``k`` images per prompt
    by tier."""
    tiers = set(frame["tier"]) if cfg.tiers is None else set(cfg.tiers)
    unknown = sorted(tiers - set(cfg.images_per_prompt))
    if unknown:
        raise fail(table_path, f"tier(s) {', '.join(map(str, unknown))} have no generate.images_per_prompt entry")
    rows = [i for i, (split, tier) in enumerate(zip(frame["split"], frame["tier"], strict=True))
            if split in cfg.splits and tier in tiers]
    if cfg.limit is not None:
        rows = rows[: cfg.limit]
    ids, tiers = frame["prompt_id"].tolist(), frame["tier"].tolist()
    return [
        Item(row=i, k=k, seed=sample_seed(ids[i], k, cfg.seed))
        for i in rows
        for k in range(cfg.images_per_prompt[tiers[i]])
    ]


def shard_name(index: int) -> str:
    return f"shard-{index:06d}.tar"


def _identity(cfg: GenerateConfig) -> dict:
    """The settings that decide the images (those a resumed run must share with the first one)."""
    data = cfg.model_dump(mode="json", exclude={"out"})
    for section, keys in _RUN_ONLY.items():
        for key in keys:
            data[section].pop(key, None)
    return data


def _check_or_record_run(cfg: GenerateConfig, keys: list[str], rank: int) -> None:
    """Refuse to resume into a folder made from other settings or another prompt table; record ours."""
    plan = {
        "samples": len(keys),
        "keys_sha256": hashlib.sha256("\n".join(keys).encode()).hexdigest(),
        "settings": _identity(cfg),
    }
    path = cfg.out / PLAN_NAME
    if path.exists():
        previous = json.loads(path.read_text(encoding="utf-8"))
        if previous["keys_sha256"] != plan["keys_sha256"]:
            raise fail(path, "this folder was generated from another prompt table or selection; "
                             "use a new generate.out")
        changed = sorted(k for k in plan["settings"] if plan["settings"][k] != previous["settings"].get(k))
        if changed:
            raise fail(path, f"this folder was generated with other {', '.join(changed)}; use a new generate.out")
    elif rank == 0:
        write_resolved(cfg, "generate", cfg.out)
        write_text_atomic(path, json.dumps(plan, indent=1, sort_keys=True))


def build_backend(cfg: GenerateConfig) -> ImageGenerator:
    if cfg.backend == "scenes":
        from img2prompt.generate.scenes import ScenesGenerator

        return ScenesGenerator(cfg.size, cfg.scenes.pictographs)
    from img2prompt.generate.diffusion import DiffusionGenerator

    return DiffusionGenerator(cfg.diffusion, cfg.size)


def _samples(items: list[Item], frame, embeddings: np.ndarray, backend: ImageGenerator) -> Iterator[Sample]:
    """Draw ``items`` in batches and yield them as shard samples, in order."""
    for start in range(0, len(items), backend.batch_size):
        batch = items[start : start + backend.batch_size]
        prompts = [frame["prompt"].iat[item.row] for item in batch]
        images = backend.generate(prompts, [item.seed for item in batch])
        for item, prompt, image in zip(batch, prompts, images, strict=True):
            row = frame.iloc[item.row]
            meta = {
                "prompt_id": row["prompt_id"], "prompt": prompt, "source": row["source"], "split": row["split"],
                "tier": row["tier"], "k": item.k, "seed": item.seed, "generator": backend.settings,
            }
            yield Sample(key=sample_key(row["prompt_id"], item.k), image=image, meta=meta,
                         embedding=embeddings[item.row])


def generate(cfg: GenerateConfig, backend: ImageGenerator | None = None) -> Path:
    """Draw this rank's unfinished shards into ``cfg.out`` and return that folder.

    ``backend`` replaces the one ``cfg`` describes (e.g. an already loaded pipeline in a notebook).
    """
    from tqdm import tqdm

    from img2prompt.prompt_table import read_table

    check_paths(cfg, "generate")
    frame, embeddings = read_table(cfg.prompts)
    if not len(frame):
        raise fail(cfg.prompts, "the prompt table has no rows")
    items = plan_items(frame, cfg, cfg.prompts)
    if not items:
        tiers = "" if cfg.tiers is None else f" and tiers {cfg.tiers}"
        raise fail(cfg.prompts, f"no prompts in splits {cfg.splits}{tiers}")
    rank, world = rank_and_world()
    make_folder(cfg.out)
    keys = [sample_key(frame["prompt_id"].iat[item.row], item.k) for item in items]
    _check_or_record_run(cfg, keys, rank)
    manifest = Manifest(cfg.out)
    finished = manifest.finished()
    shards = range(0, len(items), cfg.samples_per_shard)
    todo = [
        (index, start) for index, start in enumerate(shards)
        if index % world == rank and shard_name(index) not in finished
    ]
    if not todo:
        return cfg.out
    backend = backend or build_backend(cfg)
    for index, start in tqdm(todo, desc=f"generate rank {rank}", unit="shard", disable=rank != 0):
        chunk = items[start : start + cfg.samples_per_shard]
        began = time.perf_counter()
        entry = write_shard(cfg.out / shard_name(index), _samples(chunk, frame, embeddings, backend),
                            image_format=cfg.image_format, fast=cfg.fast_encode)
        entry["seconds"] = round(time.perf_counter() - began, 3)
        entry["rank"] = rank
        manifest.record(entry)
    return cfg.out
