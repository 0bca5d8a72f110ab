"""The ``train:`` section of a config file, and which of its settings a resumed run may change.

``state.pt`` keeps the resolved section of the run that wrote it. A resumed run must do the same maths, so it
may change only the settings in ``RESUMABLE``: none of them changes the weights. Every other difference is
refused, naming the settings that differ. So is a different launch layout (``layout_changes``): the number of
processes and the training shards decide which samples each rank reads, though no setting names them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from img2prompt.config import INPUT, OUTPUT_FOLDER, Seed, StrictModel
from img2prompt.models.regressor import ModelConfig
from img2prompt.train.data import DataConfig
from img2prompt.train.optim import FinetuneConfig, OptimConfig

Tracker = Literal["tensorboard", "wandb", "mlflow"]


class TrainConfig(StrictModel):
    """The ``train:`` section of a config file."""

    out: Annotated[str, OUTPUT_FOLDER] = "runs/train"
    init_from: Annotated[str | None, INPUT] = None  # a stage-1 checkpoint dir to start from (stage 2: LQ -> HQ)
    seed: Seed = 0
    precision: Literal["no", "bf16", "fp16"] = "no"
    grad_checkpointing: bool = False
    # NHWC weights and activations: CNNs run several times faster on the CPU (oneDNN) and with AMP on GPUs.
    channels_last: bool = False
    save_every: int = Field(0, ge=0)  # optimizer steps between checkpoints; 0: at each epoch end only
    log_every: int = Field(10, ge=1)
    eval_batch_size: int = Field(64, ge=1)
    # accelerate's trackers: TensorBoard (under <out>/tb), W&B, MLflow; [] logs to none (curves.png stays)
    log_with: list[Tracker] = Field(default_factory=lambda: ["tensorboard"])
    plots: bool = True
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    optim: OptimConfig = OptimConfig()
    finetune: FinetuneConfig = FinetuneConfig()


# The settings (dotted below train.) a resumed run may change, and why none of them changes the weights. Not here,
# though it looks harmless: grad_checkpointing. Recomputing a block in the backward pass runs its BatchNorm layers
# (EfficientNet) a second time in train mode, which updates their running statistics again, so the weights differ.
RESUMABLE: dict[str, str] = {
    "out": "the run folder's path: a run may be moved",
    "log_every": "how often the train loss is logged",
    "save_every": "how often state.pt is written (saving reads the run, it touches neither weights nor RNG)",
    "eval_batch_size": "validation runs in eval mode, outside training (scores may move in the last float digits)",
    "plots": "whether curves.png is drawn",
    "log_with": "which trackers receive the logs",
    "data.verify": "how much of each shard is checked at the start (a check reads the shards, never the weights)",
    "data.on_bad_sample": "only a run that meets a bad sample differs: it skips it or stops",
    "data.max_bad_share": "only a run that meets bad samples differs: it goes on or stops",
}


def maths_changes(saved: dict[str, Any], config: TrainConfig) -> list[str]:
    """Dotted names of the settings (outside ``RESUMABLE``) in which ``config`` differs from ``saved``, a resolved
    section as ``state.pt`` keeps it. A setting added since ``saved`` was written counts at its default there: a new
    setting's default is the maths the code did before it existed."""
    missing = object()
    new = _flatten(config.model_dump(mode="json"))
    old = _flatten(TrainConfig().model_dump(mode="json")) | _flatten(saved)
    return sorted(key for key in old.keys() | new.keys()
                  if not _resumable(key) and old.get(key, missing) != new.get(key, missing))


def layout_changes(saved: dict[str, Any] | None, layout: dict[str, Any]) -> list[str]:
    """How ``layout`` (``processes``, ``train_shards``: a fingerprint of their names and bytes) differs from the
    layout ``state.pt`` kept (None: written before layouts were kept)."""
    saved = saved or {}
    return [f"{key} {saved.get(key)} -> {value}" if key == "processes" else f"{key} changed"
            for key, value in layout.items() if saved.get(key) != value]


def _resumable(key: str) -> bool:
    return any(key == f"train.{name}" or key.startswith(f"train.{name}.") for name in RESUMABLE)


def _flatten(section: dict[str, Any], prefix: str = "train") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in section.items():
        if isinstance(value, dict):
            flat |= _flatten(value, f"{prefix}.{key}")
        else:
            flat[f"{prefix}.{key}"] = value
    return flat
