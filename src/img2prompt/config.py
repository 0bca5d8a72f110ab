"""Typed configs: YAML files under configs/, one section per stage, dotted overrides from the CLI.

A config file holds top-level sections (``curate:``, ``generate:``, ``train:`` ...). Each stage owns the
pydantic model of its section and reads it with ``load_section``; unknown keys are errors, so a typo never
silently falls back to a default. Every stage writes its resolved section next to its outputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from img2prompt.errors import Img2PromptError, fail
from img2prompt.files import write_text_atomic

Section = TypeVar("Section", bound="StrictModel")
RESOLVED_NAME = "config.yaml"


class StrictModel(BaseModel):
    """Base of every config section: unknown keys are rejected, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with a one-line error naming the file when it is missing or malformed."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise fail(path, "config file not found") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise fail(path, f"invalid YAML ({str(exc).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise fail(path, "a config file must be a mapping of sections")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides in place; values are parsed as YAML (``1e-4``, ``true``, ``[1,2]``).

    A numeric part indexes a list: ``curate.sources.0.count=100``.
    """
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise Img2PromptError(f"--set {item!r}: expected KEY=VALUE, e.g. train.lr=1e-4")
        node: Any = data
        *parents, leaf = key.strip().split(".")
        for part in parents:
            if isinstance(node, list):
                node = _list_item(node, part, item)
                continue
            child = node.setdefault(part, {})
            if not isinstance(child, dict | list):
                raise Img2PromptError(f"--set {item!r}: {part!r} is not a section")
            node = child
        value = yaml.safe_load(raw) if raw.strip() else ""
        if isinstance(node, list):
            node[_index(node, leaf, item)] = value
        else:
            node[leaf] = value
    return data


def _index(items: list[Any], part: str, item: str) -> int:
    if not part.isdigit() or int(part) >= len(items):
        raise Img2PromptError(f"--set {item!r}: {part!r} is not an index of a {len(items)}-item list")
    return int(part)


def _list_item(items: list[Any], part: str, item: str) -> Any:
    child = items[_index(items, part, item)]
    if not isinstance(child, dict | list):
        raise Img2PromptError(f"--set {item!r}: item {part} is not a section")
    return child


def load_section(
    model: type[Section], section: str, path: str | Path | None = None, overrides: list[str] | None = None
) -> Section:
    """Load one section of a config file (defaults when ``path`` is None) with overrides for that section.

    Overrides may name the section (``train.lr=1e-4``); overrides of other sections are ignored so one
    ``--set`` list can drive a multi-stage command such as the quickstart.
    """
    data = read_yaml(path) if path is not None else {}
    apply_overrides(data, overrides or [])
    return validate(model, data.get(section, {}) or {}, path if path is not None else "--set", section)


def validate(model: type[Section], raw: Any, source: str | Path, where: str) -> Section:
    """Validate ``raw`` as ``model``; the first problem becomes one line: ``file: where.key: message``."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise fail(source, f"{'.'.join(str(p) for p in (where, *first['loc']))}: {first['msg']}") from None


def write_resolved(config: StrictModel, section: str, out_dir: str | Path) -> Path:
    """Write the fully resolved section to ``out_dir/config.yaml`` so an output says how it was made."""
    text = yaml.safe_dump({section: config.model_dump(mode="json")}, sort_keys=False)
    return write_text_atomic(Path(out_dir) / RESOLVED_NAME, text)
