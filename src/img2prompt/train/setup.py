"""Before a run trains: its config checked where no data is needed, its accelerator (one precision per process),
and stage 2's start from the stage-1 weights.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from img2prompt.config import check_paths
from img2prompt.errors import fail
from img2prompt.models.regressor import Regressor
from img2prompt.train.config import TrainConfig


def check_config(config: TrainConfig) -> None:
    """The config errors that need no data: one line each, before anything is built or written."""
    if not config.data.shards:
        raise fail("train.data.shards", "no shard folders given")
    check_paths(config, "train")
    if config.precision == "fp16" and not torch.cuda.is_available():
        # accelerate would quietly train in fp32 and the run would be mislabelled.
        raise fail("train.precision", "fp16 needs a CUDA GPU; use bf16 or no on the CPU")
    for tracker in config.log_with:
        if importlib.util.find_spec(tracker) is None:
            raise fail("train.log_with", f"{tracker} is not installed (pip install {tracker}), or drop it")


def build_accelerator(config: TrainConfig):
    """The run's ``Accelerator``, with its trackers logging under ``out``.

    accelerate's state is one per process: a second run in this process gets it with the first run's precision.
    Asking for another precision is refused here in one line (accelerate itself would raise a ValueError).
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, is_initialized
    from accelerate.utils import ProjectConfiguration

    if is_initialized() and AcceleratorState().mixed_precision != config.precision:
        raise fail("train.precision", f"{config.precision!r}, but this process already trained with "
                                      f"{AcceleratorState().mixed_precision!r} and accelerate keeps one precision per "
                                      "process: run this training in its own process (img2prompt train)")
    out = Path(config.out)
    return Accelerator(mixed_precision=config.precision, cpu=not torch.cuda.is_available(),
                       log_with=config.log_with or None,
                       project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "tb")))


def init_from_checkpoint(model: Regressor, path: str | Path) -> None:
    """Stage 2 starts from the stage-1 weights; the architectures must match."""
    source = Regressor.from_pretrained(path)
    missing, unexpected = model.load_state_dict(source.state_dict(), strict=False)
    if missing or unexpected:
        raise fail(path, f"stage-1 weights do not fit this model (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}): use the same model section")
