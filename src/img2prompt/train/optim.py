"""Fine-tuning tools: freezing early blocks, layer-wise LR decay, LP-FT and the LR schedule (LoRA itself is
``Regressor.add_lora``; ``FinetuneConfig`` holds its settings).

LP-FT (linear probe, then fine-tune) is a schedule, not a model change: the backbone's learning rate is held
at zero for the first ``lp_steps`` optimizer steps, then warms up and decays. Parameters never change their
``requires_grad`` mid-run, so the same code is correct under DDP.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import torch
from pydantic import Field
from torch import nn

from img2prompt.config import StrictModel
from img2prompt.models.regressor import Regressor

Beta = Annotated[float, Field(ge=0, lt=1)]  # AdamW's moment decay rates


class FinetuneConfig(StrictModel):
    method: Literal["full", "lora", "lp_ft"] = "full"
    lp_steps: int = Field(0, ge=0)  # lp_ft: optimizer steps that train the head only
    lora_rank: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    freeze_blocks: int = Field(0, ge=0)  # freeze the first N backbone blocks (the stem counts as one)
    llrd: float = Field(1.0, gt=0, le=1)  # layer-wise LR decay: block i of n gets lr * llrd ** (n - 1 - i)
    ema_decay: float = Field(0.0, ge=0, lt=1)  # > 0 keeps an EMA of the weights; it is what gets validated and saved


class OptimConfig(StrictModel):
    lr: float = Field(1e-4, gt=0)  # backbone (top block) learning rate
    head_lr: float | None = Field(None, gt=0)  # None: same as lr
    weight_decay: float = Field(0.05, ge=0)
    betas: tuple[Beta, Beta] = (0.9, 0.999)
    warmup_steps: int = Field(0, ge=0)
    epochs: int = Field(1, ge=1)
    max_steps: int | None = Field(None, ge=1)  # optimizer steps; None: epochs x steps per epoch
    grad_accum: int = Field(1, ge=1)
    clip_grad: float = Field(1.0, ge=0)  # 0 disables
    mse_weight: float = Field(0.0, ge=0)  # loss = 1 - cos + mse_weight * MSE


def freeze_blocks(model: Regressor, count: int) -> None:
    for block in model.blocks()[:count]:
        for param in block.parameters():
            param.requires_grad_(False)


def block_depths(model: Regressor) -> dict[int, int]:
    """id(param) -> depth of its backbone block; backbone params outside every block count as the top."""
    depths: dict[int, int] = {}
    for depth, block in enumerate(model.blocks()):
        for param in block.parameters():
            depths.setdefault(id(param), depth)
    return depths


def no_decay(model: Regressor) -> set[int]:
    """id(param) of the parameters the backbone's library exempts from weight decay (``no_weight_decay()``:
    position embeddings, class tokens); biases and norms are exempt by shape."""
    base = model.base_backbone()
    names = base.no_weight_decay() if hasattr(base, "no_weight_decay") else set()
    return {id(param) for name, param in base.named_parameters() if name in names}


def param_groups(model: Regressor, optim: OptimConfig, finetune: FinetuneConfig) -> list[dict]:
    """AdamW groups: head vs backbone, per-block LR under LLRD, no weight decay on biases, norms and embeddings."""
    depths = block_depths(model)
    exempt = no_decay(model)
    n_blocks = len(model.blocks())
    groups: dict[tuple[str, int, bool], dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        is_head = name.startswith("head.")
        depth = n_blocks if is_head else depths.get(id(param), n_blocks - 1)
        decay = param.ndim > 1 and id(param) not in exempt
        key = ("head" if is_head else "backbone", depth, decay)
        if key not in groups:
            lr = (optim.head_lr or optim.lr) if is_head else optim.lr * finetune.llrd ** (n_blocks - 1 - depth)
            groups[key] = {"params": [], "lr": lr, "weight_decay": optim.weight_decay if decay else 0.0,
                           "role": key[0]}
        groups[key]["params"].append(param)
    return list(groups.values())


def lr_lambdas(groups: list[dict], total_steps: int, warmup: int, lp_steps: int) -> list:
    """Per-group multipliers: linear warm-up then cosine to zero; backbone groups wait out the LP phase."""

    def schedule(start: int):
        def factor(step: int) -> float:
            step -= start
            if step < 0:
                return 0.0
            if step < warmup:
                return (step + 1) / warmup
            span = max(total_steps - start - warmup, 1)
            return 0.5 * (1.0 + math.cos(math.pi * min((step - warmup) / span, 1.0)))

        return factor

    return [schedule(lp_steps if group["role"] == "backbone" else 0) for group in groups]


def build_optimizer(model: Regressor, optim: OptimConfig, finetune: FinetuneConfig, total_steps: int
                    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    groups = param_groups(model, optim, finetune)
    optimizer = torch.optim.AdamW(groups, lr=optim.lr, betas=optim.betas)
    lp_steps = finetune.lp_steps if finetune.method == "lp_ft" else 0
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambdas(groups, total_steps, optim.warmup_steps, lp_steps))
    return optimizer, scheduler


def trainable_summary(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total
