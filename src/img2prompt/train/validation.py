"""Validation each epoch: the mean cosine of the model on the first image of each held-out prompt, overall and
per source, each process scoring its share and every process getting the gathered numbers.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from img2prompt.models.regressor import Regressor
from img2prompt.train.data import (
    eval_share,
    iter_eval_batches,
)
from img2prompt.train.epochs import OnBadSample
from img2prompt.train.index import ShardIndex


@torch.no_grad()
def validate(model: Regressor, index: ShardIndex, split: str, batch_size: int, device: torch.device,
             baseline: np.ndarray | None = None, on_bad_sample: OnBadSample = "skip") -> dict[str, Any]:
    """Mean cosine of ``model`` on the first image of each prompt of ``split``, overall and per source.

    Each process scores an equal share of those images and every process gets the gathered result: the numbers one
    process scoring them all would give. Skipped bad images are counted in ``val_bad_samples``.
    """
    from accelerate import PartialState
    from accelerate.utils import gather_object

    state = PartialState()
    rows = index.first_images(split)
    if not len(rows):
        return {}
    share, real = eval_share(rows, state.process_index, state.num_processes)
    was_training = model.training
    model.eval()
    cosines, base, positions, skipped = [], [], [], []
    for pixels, targets, kept, bad in iter_eval_batches(index, share, model.image_transform, batch_size,
                                                        on_bad_sample):
        pred = model(pixels.to(device)).float().cpu()
        targets = F.normalize(targets, dim=-1)
        cosines.append((pred * targets).sum(dim=-1).numpy())
        if baseline is not None:
            base.append((targets @ torch.from_numpy(baseline)).numpy())
        positions += kept
        skipped += bad
    model.train(was_training)
    for message in skipped:
        print(f"validate: skipped a bad sample: {message}", file=sys.stderr, flush=True)
    positions = np.array(positions)
    mine = positions < real  # the padding of the last shares is scored, then dropped
    part = {"scores": np.concatenate(cosines)[mine], "rows": share[positions[mine]], "skipped": len(skipped),
            "base": np.concatenate(base)[mine] if base else None}
    return _val_result(index, gather_object([part]))


def _val_result(index: ShardIndex, parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The validation record from every rank's share, in rank order."""
    scores = np.concatenate([part["scores"] for part in parts])
    sources = np.array(index.sources, dtype=object)[index.source[np.concatenate([part["rows"] for part in parts])]]
    result = {"val_mean_cosine": float(scores.mean()), "val_count": len(scores),
              "val_per_source": {name: float(scores[sources == name].mean()) for name in sorted(set(sources))},
              "val_bad_samples": sum(part["skipped"] for part in parts)}
    if parts[0]["base"] is not None:
        result["baseline_mean_cosine"] = float(np.concatenate([part["base"] for part in parts]).mean())
    return result
