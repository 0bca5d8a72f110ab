"""Learning bars: what a test asserts that a model learned, and how far above its bar the worst run landed.

Another CPU takes other SIMD kernels, so a training's float path, and so its final score, differs from machine to
machine; a bar tuned to one CPU fails on the next. Each learning test therefore computes its quantities in a
function the benchmark can call too (``measure(seed, root) -> {quantity: value}``), and asserts them against bars
set well below the worst value ``benchmarks/learning_margins.py`` measured over 5 seeds x {1, 2} threads. The
worst values are written next to the bars, so a reader sees the room each assertion has.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Bar:
    """A quantity must reach ``bar``; ``worst`` is the lowest value measured over seeds and thread counts."""

    bar: float
    worst: float

    def __post_init__(self) -> None:
        assert self.worst > self.bar, "a bar at or above a measured value would fail on some machine"


def assert_learned(values: dict[str, float], bars: dict[str, Bar]) -> None:
    """Every quantity of ``bars`` reached its bar (the message lists them all, with their measured room)."""
    assert set(bars) <= set(values), f"measured {sorted(values)}, bars for {sorted(bars)}"
    short = {name: (round(values[name], 4), bar) for name, bar in bars.items() if not values[name] >= bar.bar}
    assert not short, f"below the bar: {short}"


def loss_drop(run: Path, steps: int) -> float:
    """A training run's mean loss over its first ``steps`` steps minus that over its last: one step is too noisy."""
    values = [loss for _, loss in json.loads((run / "metrics.json").read_text())["train_loss"]]
    return sum(values[:steps]) / steps - sum(values[-steps:]) / steps
