"""The ensemble model kind: members blended with fitted weights, and its YAML (DESIGN.md contract 5).

The blend of members ``m`` with predictions ``P_m`` is ``normalise(sum_m w_m * P_m)``, with one weight per
member or one per member and dimension. ``img2prompt ensemble`` fits the weights (``img2prompt.ensemble``);
this module only reads, writes and applies them::

    ensemble:
      members: [{model: <checkpoint dir, ensemble YAML or baseline spec>, weight: 0.7, tta: false}, ...]
      fit_on: [<prediction files>]     truth: <prompts CSV, table or shards>
      images: 2500    score: 0.612     member_scores: {<model>: 0.598, ...}

Member paths are stored relative to the YAML's folder, so a folder of checkpoints + YAML can be moved.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import numpy as np
import yaml
from PIL import Image
from pydantic import Field

from img2prompt.config import StrictModel, read_yaml, validate
from img2prompt.errors import fail
from img2prompt.files import write_text_atomic
from img2prompt.models.embedder import ImageEmbedder
from img2prompt.models.specs import map_paths
from img2prompt.space import EMBEDDING_DIM, normalise

SECTION = "ensemble"


Weight = Annotated[float, Field(ge=0)]  # blend weights are non-negative (the fit keeps them so)


class Member(StrictModel):
    model: str
    weight: Weight | list[Weight]
    tta: bool = False


class EnsembleSpec(StrictModel):
    members: list[Member]
    fit_on: list[str] = Field(default_factory=list)
    truth: str | None = None
    images: int = Field(0, ge=0)
    score: float | None = None
    member_scores: dict[str, float] = Field(default_factory=dict)


def blend(predictions: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Normalised weighted sum of member predictions (m, n, 384) with (m,) or (m, 384) weights."""
    weights = np.asarray(weights, np.float32)
    if weights.ndim == 1:
        weights = np.repeat(weights[:, None], EMBEDDING_DIM, axis=1)
    return normalise(np.einsum("mnd,md->nd", np.asarray(predictions, np.float32), weights))


class Ensemble:
    """A weighted blend of member embedders, renormalised; weights are scalars or 384-d vectors."""

    def __init__(self, members: Sequence[ImageEmbedder], weights: np.ndarray, name: str = "ensemble"):
        self.members = list(members)
        self.weights = np.asarray(weights, dtype=np.float32)
        if self.weights.shape not in ((len(self.members),), (len(self.members), EMBEDDING_DIM)):
            raise fail(name, f"{len(self.members)} members need as many weights (or {EMBEDDING_DIM}-d weights)")
        self.name = name
        self.sources = tuple(sorted({source for member in self.members for source in member.sources}))

    def embed(self, images: list[Image.Image]) -> np.ndarray:
        return blend(np.stack([member.embed(images) for member in self.members]), self.weights)


def read_spec(path: str | Path) -> EnsembleSpec:
    """Parse and validate an ensemble YAML; its weights must be all scalars or all 384-d lists."""
    data = read_yaml(path)
    if SECTION not in data:
        raise fail(path, "no 'ensemble:' section: not an ensemble YAML")
    spec = validate(EnsembleSpec, data[SECTION], path, SECTION)
    if not spec.members:
        raise fail(path, "ensemble has no members")
    weights = [m.weight for m in spec.members]
    if len({np.ndim(w) for w in weights}) != 1:
        raise fail(path, "member weights must all be scalars or all be 384-d lists")
    if np.ndim(weights[0]) == 1 and any(len(w) != EMBEDDING_DIM for w in weights):  # type: ignore[arg-type]
        raise fail(path, f"per-dimension weights must have {EMBEDDING_DIM} values")
    return spec


def write_spec(spec: EnsembleSpec, path: Path) -> Path:
    """Write the YAML atomically, member paths made relative to its folder."""
    portable = spec.model_copy(update={"members": [
        m.model_copy(update={"model": _portable(m.model, path.parent)}) for m in spec.members]})
    return write_text_atomic(path, yaml.safe_dump({SECTION: portable.model_dump(mode="json")}, sort_keys=False))


def member_spec(model: str, folder: Path) -> str:
    """A member's model string as written in the YAML, its paths resolved against the YAML's folder."""
    return map_paths(model, lambda path: str(folder / path) if (folder / path).exists() else path)


def _portable(model: str, folder: Path) -> str:
    """A member's model string with its paths on disk made relative to the YAML's folder."""
    return map_paths(model, lambda path: os.path.relpath(path, folder) if Path(path).exists() else path)
