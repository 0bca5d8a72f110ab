"""Model spec strings: what a user types to name a model, parsed once for ``models.load`` and the ensemble YAML.

A spec is a path (a checkpoint directory or an ensemble YAML) or ``KIND:SOURCE[?key=value&...]``:
``mean:PROMPTS.parquet``, ``nearest:SHARDS``, ``clip:MODEL/PRETRAINED?bank=PROMPTS.parquet&k=32`` and
``hf-hub:ORG/NAME[@REVISION]``. Some parts are file paths (a baseline's source, a zero-shot model's bank):
``map_paths`` rewrites exactly those, so an ensemble YAML can store them relative to its own folder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

KINDS = ("mean", "nearest", "clip", "hf-hub")
PATH_SOURCES = ("mean", "nearest")  # kinds whose SOURCE is a file path
PATH_PARAMS = ("bank",)  # parameters that are file paths


@dataclass(frozen=True)
class Spec:
    kind: str | None  # None: the spec is a path
    source: str
    params: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        if self.kind is None:
            return self.source
        query = f"?{urlencode(self.params, safe='/:.@~')}" if self.params else ""
        return f"{self.kind}:{self.source}{query}"


def parse(text: str | Path) -> Spec:
    """Split a spec string; anything that is not ``KIND:...`` for a known kind (or that exists on disk) is a path."""
    text = str(text)
    kind, sep, rest = text.partition(":")
    if not sep or kind not in KINDS or Path(text).exists():
        return Spec(None, text)
    source, _, query = rest.partition("?")
    return Spec(kind, source, dict(parse_qsl(query, keep_blank_values=True)))


def map_paths(text: str, change: Callable[[str], str]) -> str:
    """The spec with ``change`` applied to each of its file paths (the whole spec when it is a path)."""
    spec = parse(text)
    if spec.kind is None:
        return change(spec.source)
    source = change(spec.source) if spec.kind in PATH_SOURCES and spec.source else spec.source
    params = {k: change(v) if k in PATH_PARAMS else v for k, v in spec.params.items()}
    return str(Spec(spec.kind, source, params))
