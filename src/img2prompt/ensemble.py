"""Ensembling: fit member weights on validation predictions and write the YAML that predict/serve load.

The blend of members ``m`` with predictions ``P_m`` is ``normalise(sum_m w_m * P_m)``; the weights are
non-negative and sum to 1 (a softmax over free parameters), either one per member or one per member and
dimension. They maximise the mean cosine to the true prompt embeddings (L-BFGS on that exact objective).

Ensemble YAML (DESIGN.md contract 5)::

    ensemble:
      members: [{model: <checkpoint dir, ensemble YAML or baseline spec>, weight: 0.7, tta: false}, ...]
      fit_on: [<prediction files>]     truth: <prompts CSV or table>
      images: 2500    score: 0.612     member_scores: {<model>: 0.598, ...}

Member paths are stored relative to the YAML's folder, so a folder of checkpoints + YAML can be moved.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import yaml
from pydantic import Field

from img2prompt.config import StrictModel, read_yaml, validate
from img2prompt.errors import Img2PromptError, fail
from img2prompt.files import write_text_atomic
from img2prompt.kaggle import EMBEDDING_DIM, mean_cosine
from img2prompt.predict import Ensemble, ImageEmbedder, normalise


class Member(StrictModel):
    model: str
    weight: float | list[float]
    tta: bool = False


class EnsembleSpec(StrictModel):
    members: list[Member]
    fit_on: list[str] = Field(default_factory=list)
    truth: str | None = None
    images: int = 0
    score: float | None = None
    member_scores: dict[str, float] = Field(default_factory=dict)


def fit_weights(predictions: np.ndarray, target: np.ndarray, *, per_dim: bool = False) -> np.ndarray:
    """Weights (m,) or (m, 384), non-negative and summing to 1 (per dimension), maximising mean cosine.

    ``predictions`` is (m, n, 384) member outputs, ``target`` (n, 384). The weights are a softmax over free
    logits, optimised by L-BFGS with the exact gradient from equal weights: deterministic and fast.
    """
    from scipy.optimize import minimize

    preds = np.asarray(predictions, np.float64)
    truth = normalise(np.asarray(target, np.float64))
    members, count = preds.shape[:2]
    shape = (members, EMBEDDING_DIM) if per_dim else (members, 1)

    def loss_and_grad(flat: np.ndarray) -> tuple[float, np.ndarray]:
        logits = flat.reshape(shape)
        weights = np.exp(logits - logits.max(axis=0))
        weights /= weights.sum(axis=0)
        mixed = np.einsum("mnd,md->nd", preds, np.broadcast_to(weights, (members, EMBEDDING_DIM)))
        norms = np.maximum(np.linalg.norm(mixed, axis=1, keepdims=True), 1e-12)
        unit = mixed / norms
        cosines = (unit * truth).sum(axis=1, keepdims=True)
        d_mixed = (truth - cosines * unit) / norms / count  # d mean-cosine / d mixed
        d_weights = np.einsum("mnd,nd->md", preds, d_mixed)
        if not per_dim:
            d_weights = d_weights.sum(axis=1, keepdims=True)
        d_logits = weights * (d_weights - (weights * d_weights).sum(axis=0))
        return -float(cosines.mean()), -d_logits.ravel()

    result = minimize(loss_and_grad, np.zeros(int(np.prod(shape))), jac=True, method="L-BFGS-B")
    logits = result.x.reshape(shape)
    weights = np.exp(logits - logits.max(axis=0))
    weights /= weights.sum(axis=0)
    return weights if per_dim else weights[:, 0]


def blend(predictions: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Normalised weighted sum of member predictions (m, n, 384) with (m,) or (m, 384) weights."""
    weights = np.asarray(weights, np.float32)
    if weights.ndim == 1:
        weights = np.repeat(weights[:, None], EMBEDDING_DIM, axis=1)
    return normalise(np.einsum("mnd,md->nd", np.asarray(predictions, np.float32), weights))


def run_ensemble(
    prediction_files: list[Path], truth: Path, out: Path, *, per_dim: bool = False, tta: bool = False
) -> EnsembleSpec:
    """Fit weights on the images every member predicted and write the ensemble YAML atomically."""
    from img2prompt.evaluate import load_truth, match_truth
    from img2prompt.predict import read_predictions

    members: dict[str, dict[str, np.ndarray]] = {}
    for path in prediction_files:
        frame, vectors = read_predictions(path)
        for model, rows in frame.groupby("model", sort=False).indices.items():
            if model in members:
                raise fail(path, f"model {model!r} appears in more than one predictions file")
            members[str(model)] = dict(zip(frame.image_id.iloc[rows], vectors[rows], strict=True))
    if len(members) < 2:
        raise Img2PromptError(f"ensemble: need predictions of at least 2 models, got {len(members)}")
    common = sorted(set.intersection(*(set(by_id) for by_id in members.values())))
    truth_table = load_truth(truth)
    rows = match_truth(common, truth_table, truth)
    target = truth_table.embeddings[rows]
    stacked = np.stack([[by_id[i] for i in common] for by_id in members.values()])
    weights = fit_weights(stacked, target, per_dim=per_dim)
    spec = EnsembleSpec(
        members=[
            Member(model=_portable(name, out.parent), weight=w.tolist() if per_dim else float(w), tta=tta)
            for name, w in zip(members, weights, strict=True)
        ],
        fit_on=[str(p) for p in prediction_files],
        truth=str(truth),
        images=len(common),
        score=mean_cosine(blend(stacked, weights), target),
        member_scores={name: mean_cosine(p, target) for name, p in zip(members, stacked, strict=True)},
    )
    write_text_atomic(out, yaml.safe_dump({"ensemble": spec.model_dump(mode="json")}, sort_keys=False))
    return spec


def _portable(model: str, folder: Path) -> str:
    """A member path relative to the YAML's folder when it is a path on disk (baseline specs included)."""
    kind, sep, source = model.partition(":")
    if sep and not Path(model).exists() and Path(source).exists():
        return f"{kind}:{os.path.relpath(source, folder)}"
    return os.path.relpath(model, folder) if Path(model).exists() else model


def _resolve(model: str, folder: Path) -> str:
    kind, sep, source = model.partition(":")
    if sep and not (folder / model).exists() and (folder / source).exists():
        return f"{kind}:{folder / source}"
    return str(folder / model) if (folder / model).exists() else model


def read_spec(path: str | Path) -> EnsembleSpec:
    """Parse and validate an ensemble YAML."""
    data = read_yaml(path)
    if "ensemble" not in data:
        raise fail(path, "no 'ensemble:' section: not an ensemble YAML")
    return validate(EnsembleSpec, data["ensemble"], path, "ensemble")


def load_ensemble(path: str | Path, *, device: str = "cpu") -> ImageEmbedder:
    """Load every member (relative to the YAML's folder) and blend them with the fitted weights."""
    from img2prompt.predict import load_model

    path = Path(path)
    spec = read_spec(path)
    if not spec.members:
        raise fail(path, "ensemble has no members")
    members = [load_model(_resolve(m.model, path.parent), tta=m.tta, device=device) for m in spec.members]
    weights = [m.weight for m in spec.members]
    if len({np.ndim(w) for w in weights}) != 1:
        raise fail(path, "member weights must all be scalars or all be 384-d lists")
    if np.ndim(weights[0]) == 1 and any(len(w) != EMBEDDING_DIM for w in weights):  # type: ignore[arg-type]
        raise fail(path, f"per-dimension weights must have {EMBEDDING_DIM} values")
    return Ensemble(members, np.asarray(weights, np.float32), name=str(path))
