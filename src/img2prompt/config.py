"""Configs: one YAML file of top-level sections (``curate:``, ``generate:``, ``train:`` ...), read the same way
by every verb with ``ConfigFile(path, overrides, known)``.

- Each stage owns the pydantic model of its section; a verb validates only the sections it runs
  (``ConfigFile.section(name, model)``), so a file may hold the sections of several verbs. This module knows no
  stage: the orchestrators pass the names of every section (``known``), and a section of another name is an
  error, as is an unknown key, with a "did you mean", so a typo never silently falls back to a default.
- ``base:`` (a path or a list of paths, relative to the file, else a shipped ``configs/...`` name) includes
  other config files first; this file's mappings are merged over theirs key by key, lists and scalars replace.
  Stage 2 of a recipe is its stage 1 plus a few lines; a user's config can start from a shipped one.
- The shipped configs are package data: ``configs/train/x.yaml`` that does not exist on disk is read from the
  installed package, so a wheel install runs every documented command.
- ``--set a.b.c=value`` overrides, values parsed as YAML; a numeric part indexes a list.

Every stage writes its resolved section next to its outputs (``write_resolved``).
"""

from __future__ import annotations

import difflib
from collections.abc import Collection
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from img2prompt.errors import Img2PromptError, fail
from img2prompt.files import unwritable, write_text_atomic

Section = TypeVar("Section", bound="StrictModel")
RESOLVED_NAME = "config.yaml"
BASE_KEY = "base"
PACKAGED_PREFIX = "configs"
# pydantic error types of a number outside its bounds (NaN and infinities included) and the JSON schema's bounds
OUT_OF_RANGE = {"greater_than", "greater_than_equal", "less_than", "less_than_equal", "finite_number"}
_BOUNDS = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}

Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]  # numpy's and torch's seeds are unsigned 32-bit integers

class StrictModel(BaseModel):
    """Base of every config section: unknown keys are rejected, values are validated on assignment, NaN and
    infinities are refused. Every number carries its bounds (``Field(ge=..., le=...)``), so an impossible value
    fails when the config loads, before any work starts."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=(), allow_inf_nan=False)


@dataclass(frozen=True)
class PathRule:
    """How a path field (``Annotated[Path, INPUT]``) is checked when its stage starts, by ``check_paths``."""

    must_exist: bool  # an input; else an output folder: a folder, or one that can be made, where we may write


INPUT = PathRule(must_exist=True)
OUTPUT_FOLDER = PathRule(must_exist=False)


def check_paths(section: StrictModel, where: str) -> None:
    """Fail, before any work, on a missing input or an output folder that cannot be written (``INPUT`` and
    ``OUTPUT_FOLDER`` fields of ``section`` and of the sections inside it): one line naming the path and the key.
    Stages call it when they start; loading a config cannot, as a chain's inputs are made by its earlier steps."""
    for name, field in type(section).model_fields.items():
        value, key = getattr(section, name), f"{where}.{name}"
        rule = next((m for m in field.metadata if isinstance(m, PathRule)), None)
        items = value if isinstance(value, list) else [value]
        for index, item in enumerate(items):
            if isinstance(item, StrictModel):
                check_paths(item, f"{key}.{index}" if isinstance(value, list) else key)
            elif rule is not None and item is not None:
                why = _path_problem(Path(item), rule)
                if why is not None:
                    raise fail(item, f"{key}: {why}")


def _path_problem(path: Path, rule: PathRule) -> str | None:
    if rule.must_exist:
        return None if path.expanduser().exists() else "no such file or folder"
    return unwritable(path, folder=True)


def packaged_configs() -> Path:
    """The folder of configs shipped inside the package (``configs/`` in a checkout links to it)."""
    return Path(str(resources.files("img2prompt") / PACKAGED_PREFIX))


def resolve_config_path(path: str | Path) -> Path:
    """``path`` itself when it exists, else the packaged copy of ``configs/...`` (a wheel has no checkout)."""
    path = Path(path)
    if path.exists() or path.is_absolute():
        return path
    parts = path.parts[1:] if path.parts[:1] == (PACKAGED_PREFIX,) else path.parts
    packaged = packaged_configs().joinpath(*parts)
    return packaged if parts and packaged.exists() else path


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with a one-line error naming the file when it is missing or malformed."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise fail(path, "config file not found") from None
    except IsADirectoryError:
        raise fail(path, "is a folder, not a config file") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise fail(path, f"invalid YAML ({str(exc).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise fail(path, "a config file must be a mapping of sections")
    return data


def read_with_bases(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A config file with its ``base:`` files merged underneath it (recursively; a cycle is an error)."""
    path = resolve_config_path(path)
    if path.resolve() in _seen:
        raise fail(path, f"base: includes itself ({' -> '.join(str(p) for p in (*_seen, path))})")
    data = read_yaml(path)
    bases = data.pop(BASE_KEY, [])
    bases = [bases] if isinstance(bases, str) else bases
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise fail(path, "base: must be a path or a list of paths")
    merged: dict[str, Any] = {}
    for base in bases:
        beside = path.parent / base
        merged = deep_merge(merged, read_with_bases(beside if beside.exists() else resolve_config_path(base),
                                                    (*_seen, path.resolve())))
    return deep_merge(merged, data)


def deep_merge(under: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` merged onto ``under``: mappings key by key, everything else replaced."""
    merged = dict(under)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def override_key(item: str) -> str:
    """The key of a ``KEY=VALUE`` override; anything else is a one-line error."""
    key, sep, _ = item.partition("=")
    if not sep or not key.strip():
        raise Img2PromptError(f"--set {item!r}: expected KEY=VALUE, e.g. train.optim.lr=1e-4")
    return key.strip()


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides in place; values are parsed as YAML (``1e-4``, ``true``, ``[1,2]``).

    A numeric part indexes a list: ``curate.sources.0.count=100``.
    """
    for item in overrides:
        key, raw = override_key(item), item.partition("=")[2]
        node: Any = data
        *parents, leaf = key.split(".")
        for part in parents:
            if isinstance(node, list):
                node = _list_item(node, part, item)
                continue
            child = node.setdefault(part, {})
            if not isinstance(child, dict | list):
                raise Img2PromptError(f"--set {item!r}: {part!r} is not a section")
            node = child
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            why = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise Img2PromptError(f"--set {item!r}: the value is not valid YAML ({why})") from None
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


class ConfigFile:
    """A config file read with its ``base:`` files and ``--set`` overrides; sections are validated on request.

    ``known`` names every section a config file may hold (the orchestrators own that list); a section of another
    name is a one-line error with a "did you mean". ``path=None`` reads only the overrides.
    """

    def __init__(self, path: str | Path | None, overrides: list[str] | None, known: Collection[str]):
        self.source = str(path) if path is not None else "--set"
        self.data = read_with_bases(path) if path is not None else {}
        apply_overrides(self.data, overrides or [])
        unknown = [name for name in self.data if name not in known]
        if unknown:
            raise fail(self.source, f"unknown section {unknown[0]!r}{did_you_mean(unknown[0], known)} "
                                    f"(sections: {', '.join(known)})")

    def __contains__(self, name: str) -> bool:
        return name in self.data

    def section(self, name: str, model: type[Section]) -> Section:
        """Section ``name`` validated as ``model``, from defaults where the file has none (a section that needs
        values, such as ``curate.sources``, then fails with a line naming it)."""
        return validate(model, self.data.get(name) or {}, self.source, name)


def validate(model: type[Section], raw: Any, source: str | Path, where: str) -> Section:
    """Validate ``raw`` as ``model``; the first problem becomes one line: ``file: where.key: message``, naming the
    value and, for a number out of its bounds, the allowed range."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        location = ".".join(str(p) for p in (where, *first["loc"]))
        problem, value = first["msg"], first.get("input")
        if first["type"] in OUT_OF_RANGE:
            problem = f"{_shown(value)} is out of range (allowed: {_allowed_range(model, first['loc'])})"
        elif isinstance(value, int | float | str) and first["type"] != "extra_forbidden":
            problem += f" (got {_shown(value)})"
        if first["type"] == "extra_forbidden":
            parent = _model_at(model, first["loc"][:-1])
            problem += did_you_mean(str(first["loc"][-1]), parent.model_fields if parent else {})
        raise fail(source, f"{location}: {problem}") from None


def _allowed_range(model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    """The bounds of the number at ``loc`` in ``model``, from its JSON schema: e.g. ``>= 1 and <= 1000``."""
    schema = model.model_json_schema()
    definitions = schema.get("$defs", {})
    node = schema
    for part in loc:
        node = resolve_schema(node, definitions)
        if isinstance(part, int):  # a list or tuple item
            items = node.get("prefixItems") or []
            node = items[part] if part < len(items) else node.get("items", {})
        else:  # a field, or a mapping's value
            node = node.get("properties", {}).get(part) or node.get("additionalProperties") or {}
    node = resolve_schema(node, definitions)
    bounds = [f"{sign} {node[key]}" for key, sign in _BOUNDS.items() if key in node]
    return " and ".join(bounds) or "a finite number"


def resolve_schema(node: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    """A schema node with its ``$ref`` followed and, for ``X | None``, the branch that is not null."""
    while True:
        if "$ref" in node:
            node = definitions[node["$ref"].rsplit("/", 1)[-1]]
        elif "anyOf" in node:
            node = next((n for n in node["anyOf"] if n.get("type") != "null"), {})
        else:
            return node


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model class found by walking ``loc`` down from ``model`` (list indices skipped)."""
    import typing

    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(str(part)) if isinstance(current, type) else None
        if field is None:
            return None
        current = field.annotation
        while typing.get_origin(current) is not None:  # list[X], X | None, dict[str, X]
            current = next((a for a in typing.get_args(current) if isinstance(a, type) and
                            issubclass(a, BaseModel)), None)
            if current is None:
                return None
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def did_you_mean(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def write_resolved(config: StrictModel, section: str, out_dir: str | Path) -> Path:
    """Write the fully resolved section to ``out_dir/config.yaml`` so an output says how it was made."""
    text = yaml.safe_dump({section: config.model_dump(mode="json")}, sort_keys=False)
    return write_text_atomic(Path(out_dir) / RESOLVED_NAME, text)
