"""The regression head: pool, optional large FC block, project to the 384-d target, L2-normalise.

The 1st-place solution put a "large FC layer before the output"; ``fc_dim > 0`` adds that block
(Linear -> BatchNorm -> activation -> Linear). Outputs are unit vectors because the metric is cosine.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from img2prompt.space import EMBEDDING_DIM

ACTIVATIONS: dict[str, type[nn.Module]] = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU}


class AttentionPool(nn.Module):
    """Weighted mean of tokens with one learned score per token (for BLIP-2's Q-Former queries)."""

    def __init__(self, dim: int):
        super().__init__()
        self.score = nn.Linear(dim, 1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        weights = self.score(tokens).softmax(dim=1)
        return (weights * tokens).sum(dim=1)


class EmbeddingHead(nn.Module):
    """Features (n, d) or tokens (n, t, d) -> unit vectors (n, 384)."""

    def __init__(
        self,
        in_dim: int,
        *,
        fc_dim: int = 0,
        activation: str = "gelu",
        dropout: float = 0.0,
        pool: Literal["mean", "attention"] = "mean",
        out_dim: int = EMBEDDING_DIM,
    ):
        super().__init__()
        self.pool = AttentionPool(in_dim) if pool == "attention" else None
        layers: list[nn.Module] = [nn.Dropout(dropout)] if dropout > 0 else []
        if fc_dim > 0:
            layers += [nn.Linear(in_dim, fc_dim), nn.BatchNorm1d(fc_dim), ACTIVATIONS[activation](),
                       nn.Linear(fc_dim, out_dim)]
        else:
            layers.append(nn.Linear(in_dim, out_dim))
        self.mlp = nn.Sequential(*layers)

    @torch.no_grad()
    def start_at(self, mean_target: torch.Tensor) -> None:
        """Start from the constant-mean baseline: output bias = mean target, output weights = 0.

        A fresh random head predicts a random direction (cosine ~0 to every target, far below the ~0.5
        the mean embedding scores), so short runs would spend their budget just finding the mean. Like
        setting a classifier's bias to the log class priors, this makes every step an improvement on it.
        """
        last = self.mlp[-1]
        last.weight.zero_()
        last.bias.copy_(mean_target.to(last.bias))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.ndim == 3:
            features = self.pool(features) if self.pool is not None else features.mean(dim=1)
        return F.normalize(self.mlp(features).float(), dim=-1)


def cosine_loss(pred: torch.Tensor, target: torch.Tensor, mse_weight: float = 0.0) -> torch.Tensor:
    """1 - cosine (the metric), plus an optional small MSE between the unit vectors."""
    target = F.normalize(target.float(), dim=-1)
    pred = pred.float()
    loss = 1.0 - F.cosine_similarity(pred, target, dim=-1).mean()
    if mse_weight > 0:
        loss = loss + mse_weight * F.mse_loss(F.normalize(pred, dim=-1), target)
    return loss
