"""The ensemble stage: fit member weights on validation predictions and write the YAML predict/serve load.

The weights are non-negative and sum to 1 (a softmax over free parameters), either one per member or one per
member and dimension. They maximise the mean cosine of the blend (``models.ensemble.blend``) to the true
prompt embeddings (L-BFGS on that exact objective). The YAML's layout is in ``models.ensemble``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from img2prompt.errors import Img2PromptError, fail
from img2prompt.files import check_output
from img2prompt.models.ensemble import EnsembleSpec, Member, blend, write_spec
from img2prompt.space import EMBEDDING_DIM, mean_cosine, normalise


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


def run_ensemble(
    prediction_files: list[Path], truth: Path, out: Path, *, per_dim: bool = False, tta: bool = False
) -> EnsembleSpec:
    """Fit weights on the images every member predicted and write the ensemble YAML atomically."""
    from img2prompt.predictions import read_predictions
    from img2prompt.truth import load_truth, match_truth

    check_output(out)
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
    truth_table = load_truth(truth, keys=common)
    rows = match_truth(common, truth_table, truth)
    target = truth_table.embeddings[rows]
    stacked = np.stack([[by_id[i] for i in common] for by_id in members.values()])
    weights = fit_weights(stacked, target, per_dim=per_dim)
    spec = EnsembleSpec(
        members=[
            Member(model=name, weight=w.tolist() if per_dim else float(w), tta=tta)
            for name, w in zip(members, weights, strict=True)
        ],
        fit_on=[str(p) for p in prediction_files],
        truth=str(truth),
        images=len(common),
        score=mean_cosine(blend(stacked, weights), target),
        member_scores={name: mean_cosine(p, target) for name, p in zip(members, stacked, strict=True)},
    )
    write_spec(spec, out)
    return spec
