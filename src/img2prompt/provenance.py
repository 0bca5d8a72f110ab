"""Say so wherever a user meets a model or a score made from the quickstart's synthetic scenes.

The quickstart renders emoji scenes offline (prompt source ``scenes``). A model trained on them shows every stage
working and is not useful on real Stable Diffusion images; a score on them says nothing about real images. The
CLI, the evaluation report, the web page and the model card all take their warning from here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

SYNTHETIC_SOURCES = frozenset({"scenes"})
MODEL_WARNING = ("learned from synthetic emoji scenes (the offline quickstart), not from Stable Diffusion images: "
                 "it shows the pipeline working and is not useful on real images")
SCORE_WARNING = ("the images are synthetic emoji scenes (the offline quickstart): these scores show the pipeline "
                 "working, not how well a model recovers the prompts of real Stable Diffusion images")
# A run's summary says both at once, each thing once: its models learned from the scenes and were scored on them.
RUN_WARNING = ("every model here learned from synthetic emoji scenes (the offline quickstart) and was scored on them: "
               "the scores show the pipeline working; the models are not useful on real Stable Diffusion images")


def synthetic(sources: Iterable[str]) -> bool:
    """True when there is at least one prompt source and every one is synthetic."""
    names = set(sources)
    return bool(names) and names <= SYNTHETIC_SOURCES


def sources_in(metrics: dict[str, Any]) -> tuple[str, ...]:
    """The prompt sources of a checkpoint's validation split, from its ``metrics.json`` mapping."""
    return tuple(sorted(metrics.get("val_per_source") or {}))


def model_warning(sources: Iterable[str]) -> str | None:
    """The warning every surface gives with a model's answers (Python, CLI, HTTP, the page), or None."""
    return f"This model {MODEL_WARNING}." if synthetic(sources) else None
