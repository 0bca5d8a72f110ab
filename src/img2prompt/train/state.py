"""What a run keeps between its steps and across a kill: its counters and curves (``Run``), ``state.pt`` read
back and checked against the config (``read_state``), and ``curves.png``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from img2prompt.errors import fail
from img2prompt.files import atomic_path
from img2prompt.train.config import RESUMABLE, TrainConfig, maths_changes

STATE_NAME = "state.pt"


class Run:
    """Position and curves of a run: what ``state.pt`` needs beyond the tensors."""

    def __init__(self) -> None:
        self.epoch = 0
        self.batch = 0  # micro-batches done in the current epoch
        self.step = 0  # optimizer steps done
        self.losses: list[list[float]] = []  # [step, mean train loss]
        self.vals: list[list[float]] = []  # [step, val mean cosine]
        self.bad: list[list[int]] = []  # per rank: [bad samples skipped in the run, in the current epoch]
        self.metrics: dict[str, Any] = {}

    def to_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "batch": self.batch, "step": self.step, "losses": self.losses,
                "vals": self.vals, "bad": self.bad}

    def load(self, data: dict[str, Any]) -> None:
        self.epoch, self.batch, self.step = int(data["epoch"]), int(data["batch"]), int(data["step"])
        self.losses, self.vals, self.bad = data["losses"], data["vals"], data.get("bad", [])


def read_state(path: Path, config: TrainConfig) -> dict[str, Any] | None:
    """``state.pt`` of a run to resume (None when there is none), refused when ``config`` changes its maths."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a torn or foreign file: say which, never unpickle arbitrary objects
        raise fail(path, f"unreadable training state ({str(exc).splitlines()[0]}); delete it to start over") from None
    changed = maths_changes(state["config"], config)
    if changed:
        resumable = ", ".join(f"train.{key}" for key in RESUMABLE)
        raise fail(path, f"written by a different train config ({', '.join(changed)} changed; a resumed run may "
                         f"change only {resumable}): use a new out or delete state.pt")
    return state


def plot_curves(path: Path, run: Run) -> None:
    """``curves.png``: the train loss per optimizer step beside the val score and the constant-mean baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    if run.losses:
        steps, losses = zip(*run.losses, strict=True)
        left.plot(steps, losses)
    left.set(title="train loss (1 - cosine)", xlabel="optimizer step")
    if run.vals:
        steps, scores = zip(*run.vals, strict=True)
        right.plot(steps, scores, marker="o", label="model")
    if "baseline_mean_cosine" in run.metrics:
        right.axhline(run.metrics["baseline_mean_cosine"], color="grey", linestyle="--",
                      label="constant-mean baseline")
        right.legend()
    right.set(title="validation mean cosine", xlabel="optimizer step")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
