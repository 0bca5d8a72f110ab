"""Fine-tuning tools: which parameters train (``apply_finetune``: LoRA, the blocks above it, frozen early blocks),
layer-wise LR decay, LP-FT and the LR schedule (LoRA itself is ``Regressor.add_lora``; ``FinetuneConfig`` holds its
settings).

LP-FT (linear probe, then fine-tune) is a schedule, not a model change: the backbone's learning rate is held
at zero for the first ``lp_steps`` optimizer steps, then warms up and decays. Parameters never change their
``requires_grad`` mid-run, so the same code is correct under DDP.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import torch
from pydantic import Field, model_validator
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
    # lora: adapters on the bottom N backbone blocks (the stem counts as one), whose own weights freeze; the blocks
    # above train directly (the 1st place's "LoRA on the bottom layers"). None: adapters on every block, nothing
    # else of the backbone trains.
    lora_blocks: int | None = Field(None, ge=1)
    freeze_blocks: int = Field(0, ge=0)  # freeze the first N backbone blocks (the stem counts as one)
    llrd: float = Field(1.0, gt=0, le=1)  # layer-wise LR decay: block i of n gets lr * llrd ** (n - 1 - i)
    ema_decay: float = Field(0.0, ge=0, lt=1)  # > 0 keeps an EMA of the weights; it is what gets validated and saved


class OptimConfig(StrictModel):
    lr: float = Field(1e-4, gt=0)  # backbone (top block) learning rate at the end of the warm-up
    head_lr: float | None = Field(None, gt=0)  # None: same as lr
    # The backbone's rate at the last step: a cosine from lr down to it. Every group ends at the same fraction of
    # its start (end_lr / lr); 0: a cosine to zero.
    end_lr: float = Field(0.0, ge=0.0)
    weight_decay: float = Field(0.05, ge=0)
    betas: tuple[Beta, Beta] = (0.9, 0.999)
    warmup_steps: int = Field(0, ge=0)  # linear warm-up, in optimizer steps ...
    warmup_epochs: float = Field(0.0, ge=0.0)  # ... or in epochs (of the first epoch's steps); set one of the two
    epochs: int = Field(1, ge=1)
    max_steps: int | None = Field(None, ge=1)  # optimizer steps; None: epochs x steps per epoch
    grad_accum: int = Field(1, ge=1)
    clip_grad: float = Field(1.0, ge=0)  # 0 disables
    mse_weight: float = Field(0.0, ge=0)  # loss = 1 - cos + mse_weight * MSE

    @model_validator(mode="after")
    def _one_warmup_and_a_decay(self) -> OptimConfig:
        if self.warmup_steps and self.warmup_epochs:
            raise ValueError("set warmup_steps or warmup_epochs, not both")
        if self.end_lr > self.lr:
            raise ValueError(f"end_lr {self.end_lr} is above lr {self.lr}: the schedule decays from lr to end_lr")
        return self

    def warmup(self, steps_per_epoch: int) -> int:
        """Optimizer steps of linear warm-up: ``warmup_steps``, or ``warmup_epochs`` epochs of ``steps_per_epoch``."""
        return self.warmup_steps or round(self.warmup_epochs * steps_per_epoch)


def apply_finetune(model: Regressor, finetune: FinetuneConfig) -> None:
    """Decide which parameters train, the one way the trainer, its exported copy and the cost projection do it:
    LoRA (on every block, or on the bottom ``lora_blocks`` with the blocks above trained), then frozen blocks."""
    if finetune.method == "lora":
        model.add_lora(finetune.lora_rank, finetune.lora_alpha, finetune.lora_dropout, blocks=finetune.lora_blocks)
    freeze_blocks(model, finetune.freeze_blocks)


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


def lr_lambdas(groups: list[dict], total_steps: int, warmup: int, lp_steps: int, end: float = 0.0) -> list:
    """Per-group multipliers: linear warm-up, then a cosine from 1 down to ``end`` (end_lr / lr); backbone groups
    wait out the LP phase."""

    def schedule(start: int):
        def factor(step: int) -> float:
            step -= start
            if step < 0:
                return 0.0
            if step < warmup:
                return (step + 1) / warmup
            span = max(total_steps - start - warmup, 1)
            return end + (1.0 - end) * 0.5 * (1.0 + math.cos(math.pi * min((step - warmup) / span, 1.0)))

        return factor

    return [schedule(lp_steps if group["role"] == "backbone" else 0) for group in groups]


def build_optimizer(model: Regressor, optim: OptimConfig, finetune: FinetuneConfig, total_steps: int,
                    steps_per_epoch: int = 0) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over ``param_groups`` and its schedule; ``steps_per_epoch`` sizes a warm-up given in epochs."""
    groups = param_groups(model, optim, finetune)
    optimizer = torch.optim.AdamW(groups, lr=optim.lr, betas=optim.betas)
    lp_steps = finetune.lp_steps if finetune.method == "lp_ft" else 0
    end = optim.end_lr / optim.lr if optim.lr else 0.0
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambdas(groups, total_steps, optim.warmup(steps_per_epoch), lp_steps, end))
    return optimizer, scheduler


def trainable_summary(model: nn.Module) -> tuple[int, int]:
    """(trained, total) parameter counts: LoRA adapters count in both, frozen weights only in the total (the
    "trained params" share of the 1st place's table 2 is trained / total)."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total
