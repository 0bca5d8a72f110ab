"""The ``train:`` section of a config file."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from img2prompt.config import StrictModel, load_section
from img2prompt.models.regressor import ModelConfig
from img2prompt.train.data import DataConfig
from img2prompt.train.optim import FinetuneConfig, OptimConfig

Tracker = Literal["tensorboard", "wandb", "mlflow"]


class TrainConfig(StrictModel):
    """The ``train:`` section of a config file."""

    out: str = "runs/train"
    init_from: str | None = None  # a stage-1 checkpoint dir to start from (stage 2: LQ -> HQ)
    seed: int = 0
    precision: Literal["no", "bf16", "fp16"] = "no"
    grad_checkpointing: bool = False
    # NHWC weights and activations: CNNs run several times faster on the CPU (oneDNN) and with AMP on GPUs.
    channels_last: bool = False
    save_every: int = 0  # optimizer steps between checkpoints; 0: at each epoch end only
    log_every: int = 10
    eval_batch_size: int = 64
    # accelerate's trackers: TensorBoard (under <out>/tb), W&B, MLflow; [] logs to none (curves.png stays)
    log_with: list[Tracker] = Field(default_factory=lambda: ["tensorboard"])
    plots: bool = True
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    optim: OptimConfig = OptimConfig()
    finetune: FinetuneConfig = FinetuneConfig()


def load_train_config(path: str | Path | None, overrides: list[str] | None = None) -> TrainConfig:
    return load_section(TrainConfig, "train", path, overrides)

