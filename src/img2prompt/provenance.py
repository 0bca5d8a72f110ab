"""Say so wherever a user meets a model or a score made from the quickstart's synthetic scenes.

The quickstart renders emoji scenes offline (prompt source ``scenes``). A model trained on them shows every stage
working and is not useful on real Stable Diffusion images; a score on them says nothing about real images. The
CLI, the evaluation report, the web page and the model card all take their warning from here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SYNTHETIC_SOURCES = frozenset({"scenes"})
MODEL_WARNING = ("learned from synthetic emoji scenes (the offline quickstart), not from Stable Diffusion images: "
                 "it shows the pipeline working and is not useful on real images")
SCORE_WARNING = ("the images are synthetic emoji scenes (the offline quickstart): these scores show the pipeline "
                 "working, not how well a model recovers the prompts of real Stable Diffusion images")


def synthetic(sources: Iterable[str]) -> bool:
    """True when there is at least one prompt source and every one is synthetic."""
    names = set(sources)
    return bool(names) and names <= SYNTHETIC_SOURCES


def sources_in(metrics: dict[str, Any]) -> tuple[str, ...]:
    """The prompt sources of a checkpoint's validation split, from its ``metrics.json`` mapping."""
    return tuple(sorted(metrics.get("val_per_source") or {}))


def checkpoint_sources(folder: str | Path) -> tuple[str, ...]:
    """``sources_in`` a checkpoint folder's ``metrics.json``; () when it has none or it is unreadable (a model
    loads without its metrics)."""
    path = Path(folder) / "metrics.json"
    if not path.is_file():
        return ()
    try:
        metrics = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return ()
    return sources_in(metrics) if isinstance(metrics, dict) else ()
