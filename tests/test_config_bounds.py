"""Every number of every config section has its bounds in the schema, so an impossible value is one line naming the
key, the value and the allowed range when the config loads, before any work starts (issue 23).

The keys are found by walking each shipped config's loaded sections along their JSON schemas (no hand list), and
random values are thrown at them through ``--set``, in-process: each load either succeeds with the value in its
bounds (none of the shipped keys takes a negative or non-finite number) or fails with one line naming the key.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import img2prompt.config as config_module
from img2prompt.config import ConfigFile, packaged_configs, resolve_schema
from img2prompt.errors import Img2PromptError
from img2prompt.sections import read_config
from test_config import MODELS

SHIPPED = sorted(p for p in packaged_configs().rglob("*.yaml") if p.parent.name != "accelerate")
BOUND_KEYS = ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum")


@dataclass(frozen=True)
class NumericKey:
    """A number of a loaded config: its dotted key, and how ``--set`` assigns it (a tuple item: the whole tuple)."""

    file: Path
    key: tuple[str | int, ...]  # (section, field, ..., index or mapping key)
    schema: dict  # its JSON schema node: type and bounds
    tuple_items: tuple | None = None  # the tuple's current items, when the number is one of them

    @property
    def dotted(self) -> str:
        return ".".join(map(str, self.key))

    @property
    def integer(self) -> bool:
        return self.schema.get("type") == "integer"

    def override(self, value: float) -> str:
        if self.tuple_items is None:
            return f"{self.dotted}={_yaml(value)}"
        items = list(self.tuple_items)
        items[int(self.key[-1])] = value
        return f"{'.'.join(map(str, self.key[:-1]))}=[{', '.join(_yaml(v) for v in items)}]"

    def loaded(self, config: ConfigFile) -> Any:
        node: Any = config.section(str(self.key[0]), MODELS[str(self.key[0])])
        for part in self.key[1:]:
            node = node[part] if isinstance(node, dict | list | tuple) else getattr(node, str(part))
        return node


def _yaml(value: float) -> str:
    return yaml.safe_dump([value], default_flow_style=True).strip()[1:-1]


def numeric_keys(file: Path) -> Iterator[NumericKey]:
    """Every number of ``file``'s sections: its loaded values walked along each section model's JSON schema."""
    config = read_config(file)
    for name in config.data:
        section = config.section(name, MODELS[name])
        schema = MODELS[name].model_json_schema()
        yield from _walk(file, (name,), schema, section.model_dump(mode="json"), schema.get("$defs", {}))


def _walk(file: Path, key: tuple, node: dict, value: Any, definitions: dict) -> Iterator[NumericKey]:
    node = resolve_schema(node, definitions)
    kind = node.get("type")
    if kind in ("integer", "number"):
        yield NumericKey(file, key, node)
    elif kind == "object" and isinstance(value, dict):
        for field, item in value.items():
            if "." in str(field):  # a mapping key with a dot (a file name) cannot be addressed by --set
                continue
            child = node.get("properties", {}).get(field) or node.get("additionalProperties")
            if isinstance(child, dict):
                yield from _walk(file, (*key, field), child, item, definitions)
    elif kind == "array" and isinstance(value, list):
        if "prefixItems" in node:  # a tuple: --set gives it whole
            for index, item_node in enumerate(node["prefixItems"]):
                for found in _walk(file, (*key, index), item_node, value[index], definitions):
                    yield NumericKey(found.file, found.key, found.schema, tuple(value))
        else:
            for index, item in enumerate(value):
                yield from _walk(file, (*key, index), node.get("items", {}), item, definitions)


KEYS = [key for file in SHIPPED for key in numeric_keys(file)]
UNIQUE = list({(key.key, key.tuple_items is None): key for key in KEYS}.values())  # one file per dotted key


@pytest.fixture(scope="module", autouse=True)
def yaml_read_once():
    """The shipped files are parsed once (PyYAML takes ~3 ms a file); every load still merges, overrides and
    validates as ``read_config`` always does."""
    read, cache = config_module.read_yaml, {}

    def cached(path):
        if str(path) not in cache:
            cache[str(path)] = read(path)
        return copy.deepcopy(cache[str(path)])

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(config_module, "read_yaml", cached)
        yield


def load_with(key: NumericKey, value: float) -> tuple[Any, str | None]:
    """The value ``key`` holds after ``--set`` (or None) and the error (or None)."""
    try:
        return key.loaded(read_config(key.file, [key.override(value)])), None
    except Img2PromptError as exc:
        return None, str(exc)


def check_one_line(key: NumericKey, error: str) -> None:
    assert "\n" not in error, error
    field = str(key.key[-1] if key.tuple_items is None or isinstance(key.key[-1], str) else key.key[-2])
    assert key.dotted in error or field in error, (key.dotted, error)  # a cross-field rule names the field


def test_the_shipped_configs_have_numbers_to_check():
    assert len(SHIPPED) >= 20 and len(UNIQUE) >= 100
    assert {key.key[0] for key in KEYS} >= {"download", "write_prompts", "curate", "generate", "train", "decode",
                                            "serve", "recipe"}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_number_of_every_section_model_has_a_lower_bound(name):
    """Including keys no shipped config sets (a field added later without bounds fails here)."""
    schema = MODELS[name].model_json_schema()
    unbounded = []

    def visit(node: dict, where: str) -> None:
        node = resolve_schema(node, schema.get("$defs", {}))
        if node.get("type") in ("integer", "number") and not {"minimum", "exclusiveMinimum"} & set(node):
            unbounded.append(where)
        for field, child in node.get("properties", {}).items():
            visit(child, f"{where}.{field}")
        for child in (node.get("additionalProperties"), node.get("items"), *node.get("prefixItems", [])):
            if isinstance(child, dict):
                visit(child, f"{where}.*")

    visit(schema, name)
    assert not unbounded, unbounded


def test_every_key_refuses_values_past_its_bounds_and_takes_its_bounds():
    """At each key's bounds, through --set: just past one is "V is out of range (allowed: ...)", on it loads
    (unless a rule across keys refuses it, in one line naming the key); -1, NaN and infinity never load."""
    for key in UNIQUE:
        for bound, sign in zip(BOUND_KEYS, (">=", ">", "<=", "<"), strict=True):
            if bound not in key.schema:
                continue
            edge, outside = key.schema[bound], just_outside(key, bound)
            _, error = load_with(key, outside)
            assert error and f"{key.dotted}: {outside!r} is out of range (allowed: " in error \
                and f"{sign} {edge}" in error, (key.dotted, outside, error)
            if not bound.startswith("exclusive"):
                value, error = load_with(key, edge)
                if error is None:
                    assert value == edge, (key.dotted, value)
                else:
                    check_one_line(key, error)
        for impossible in (-1, math.nan, math.inf):
            _, error = load_with(key, impossible)
            assert error, (key.dotted, impossible)
            check_one_line(key, error)


def just_outside(key: NumericKey, bound: str) -> float:
    """The nearest value ``bound`` refuses: the bound itself when it is exclusive."""
    edge = key.schema[bound]
    if bound.startswith("exclusive"):
        return edge
    lower = bound == "minimum"
    if key.integer:
        return edge - 1 if lower else edge + 1
    return math.nextafter(edge, -math.inf if lower else math.inf)


numbers = st.one_of(st.integers(-2**40, 2**40), st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([0, 1, -1, 0.5, 1e-9, 2**31, 2**32, 2**63, 1e300]))


@settings(max_examples=600, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(KEYS), value=numbers)
def test_random_values_load_within_their_bounds_or_fail_in_one_line(key: NumericKey, value: float):
    loaded, error = load_with(key, value)
    if error is not None:
        check_one_line(key, error)
        if "out of range" in error:
            assert f"{value!r}"[:40] in error or repr(float(value))[:40] in error, (value, error)
        return
    assert math.isfinite(value) and value >= 0, (key.dotted, value)  # no shipped key takes these
    assert loaded == value and not (key.integer and value != int(value)), (key.dotted, value, loaded)
    for bound, holds in (("minimum", value >= key.schema.get("minimum", -math.inf)),
                         ("exclusiveMinimum", value > key.schema.get("exclusiveMinimum", -math.inf)),
                         ("maximum", value <= key.schema.get("maximum", math.inf)),
                         ("exclusiveMaximum", value < key.schema.get("exclusiveMaximum", math.inf))):
        assert holds, (key.dotted, bound, value)


# The hardening probe's impossible values (issue 23), each of which ran, wrote an untrained model or ended in a
# traceback: now one line naming the key, the value and the range, before anything is written.
PROBE = [
    ("train", "train/cpu_quickstart.yaml", "train.optim.epochs=0",
     "train.optim.epochs: 0 is out of range (allowed: >= 1)"),
    ("train", "train/cpu_quickstart.yaml", "train.optim.epochs=-1", "train.optim.epochs: -1 is out of range"),
    ("train", "train/cpu_quickstart.yaml", "train.data.batch_size=-4", "train.data.batch_size: -4 is out of range"),
    ("train", "train/cpu_quickstart.yaml", "train.data.batch_size=0", "train.data.batch_size: 0 is out of range"),
    ("train", "train/cpu_quickstart.yaml", "train.model.image_size=-160",
     "train.model.image_size: -160 is out of range (allowed: >= 16 and <= 4096)"),
    ("train", "train/cpu_quickstart.yaml", "train.optim.lr=-5", "train.optim.lr: -5 is out of range (allowed: > 0)"),
    ("train", "train/cpu_quickstart.yaml", "train.data.num_workers=-3",
     "train.data.num_workers: -3 is out of range (allowed: >= 0 and <= 256)"),
    ("curate", "curate/shared_data.yaml", "curate.dedup.threshold=-1",
     "curate.dedup.threshold: -1 is out of range (allowed: > 0 and <= 1)"),
    ("generate", "generate/scenes.yaml", "generate.images_per_prompt={hq: -2}",
     "generate.images_per_prompt.hq: -2 is out of range (allowed: >= 1)"),
    ("generate", "generate/scenes.yaml", "generate.size=1000000",
     "generate.size: 1000000 is out of range (allowed: >= 8 and <= 4096)"),
    ("generate", "generate/scenes.yaml", "generate.size=100000", "generate.size: 100000 is out of range"),
    ("train", "train/cpu_quickstart.yaml", "train.optim.lr=[1,",
     "--set 'train.optim.lr=[1,': the value is not valid YAML (expected the node content, but found '<stream end>')"),
]


@pytest.mark.parametrize(("verb", "config", "override", "message"), PROBE, ids=[p[2] for p in PROBE])
def test_the_probes_impossible_values_are_one_line_before_any_work(verb, config, override, message, cli, tmp_path,
                                                                     monkeypatch):
    monkeypatch.chdir(tmp_path)  # the shipped configs write under runs/: nothing may appear
    code, stderr = cli(verb, packaged_configs() / config, "--set", override)
    assert code == 1 and len(stderr.splitlines()) == 1 and message in stderr, stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(("argv", "message"), [
    (["predict", "mean:t.parquet", "images", "--out", "p.parquet", "--batch-size", "0"],
     "Invalid value for '--batch-size': Input should be greater than or equal to 1 (got 0)"),
    (["predict", "mean:t.parquet", "images", "--out", "p.parquet", "--batch-size", "-3"],
     "Invalid value for '--batch-size': Input should be greater than or equal to 1 (got -3)"),
    (["evaluate", "p.parquet", "--truth", "t.csv", "--out", "report", "--grid", "-5"],
     "Invalid value for '--grid': Input should be greater than or equal to 0 (got -5)"),
    (["embed", "p.csv", "--out", "e.parquet", "--max-tokens", "0"], "Invalid value for '--max-tokens'"),
    (["recipe", "r.yaml", "--gpus", "0"], "Invalid value for '--gpus'"),
])
def test_an_option_out_of_its_range_is_one_line(argv, message, cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, stderr = cli(*argv)
    assert code == 1 and len(stderr.splitlines()) == 1 and stderr.startswith(f"error: {message}"), stderr
    assert not list(tmp_path.iterdir())
