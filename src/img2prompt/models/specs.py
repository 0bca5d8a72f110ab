"""Model spec strings: what a user types to name a model, parsed once for ``models.load`` and the ensemble YAML.

A spec is a path (a checkpoint directory or an ensemble YAML) or ``KIND:SOURCE[?key=value&...]``:
``mean:PROMPTS.parquet``, ``nearest:SHARDS``, ``clip:MODEL/PRETRAINED?bank=PROMPTS.parquet&k=32`` and
``hf-hub:ORG/NAME[@REVISION]``. Some parts are file paths (a baseline's source, a zero-shot model's bank):
``map_paths`` rewrites exactly those, so an ensemble YAML can store them relative to its own folder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePath
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

    def with_paths(self, change: Callable[[str], str]) -> Spec:
        """This spec with ``change`` applied to each of its file paths (the whole spec when it is a path)."""
        if self.kind is None:
            return Spec(None, change(self.source))
        source = change(self.source) if self.kind in PATH_SOURCES and self.source else self.source
        return Spec(self.kind, source, {k: change(v) if k in PATH_PARAMS else v for k, v in self.params.items()})

    def display_name(self) -> str:
        """The name a server shows: the spec without folders, which are the server's business (a checkpoint's
        folder name, an ensemble file's name, ``mean:prompts.parquet``)."""
        return str(self.with_paths(lambda path: PurePath(path).name or path))


def parse(text: str | Path) -> Spec:
    """Split a spec string; anything that is not ``KIND:...`` for a known kind (or that exists on disk) is a path."""
    text = str(text)
    kind, sep, rest = text.partition(":")
    if not sep or kind not in KINDS or Path(text).exists():
        return Spec(None, text)
    source, _, query = rest.partition("?")
    return Spec(kind, source, dict(parse_qsl(query, keep_blank_values=True)))


def map_paths(text: str, change: Callable[[str], str]) -> str:
    """The spec ``text`` with ``change`` applied to each of its file paths (``Spec.with_paths``)."""
    return str(parse(text).with_paths(change))
