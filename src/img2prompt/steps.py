"""Resumable named steps for the orchestrators (quickstart, recipe): a finished step leaves a marker in
``<out>/.steps`` and is skipped next time, so a killed pipeline resumes where it stopped."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from img2prompt.files import write_text_atomic


class Steps:
    """Runs steps with a heading and a timing each; ``timings`` holds every step's seconds."""

    def __init__(self, out: Path, label: str):
        self.markers = out / ".steps"
        self.label = label
        self.timings: dict[str, float] = {}

    def done(self, name: str) -> bool:
        return self._marker(name).exists()

    def __call__(self, name: str, work: Callable[[], Any]) -> None:
        marker = self._marker(name)
        if marker.exists():
            self.timings[name] = float(marker.read_text())
            print(f"[{self.label}] {name}: already done ({self.timings[name]} s)", flush=True)
            return
        print(f"[{self.label}] {name} ...", flush=True)
        start = time.perf_counter()
        work()
        self.timings[name] = round(time.perf_counter() - start, 1)
        write_text_atomic(marker, f"{self.timings[name]}\n")
        print(f"[{self.label}] {name}: {self.timings[name]} s", flush=True)

    def _marker(self, name: str) -> Path:
        return self.markers / (name.replace(" ", "_").replace("/", "_") + ".done")
