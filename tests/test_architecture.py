"""The house rules of docs/DESIGN.md, checked on the source: the import graph has no cycle, library modules
never import a stage, and no stage imports another stage (only the orchestrators, cli, sections and recipe, do).
Every import counts: at module level, inside a function, under ``TYPE_CHECKING`` and by name through importlib."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "img2prompt"
STAGES = ("download", "curate", "generate", "train", "predict", "ensemble", "evaluate", "serve", "embed_command",
          "push", "interrogate", "fetch", "decode_command")
ORCHESTRATORS = ("cli", "sections", "recipe", "__main__")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports(name: str) -> set[str]:
    """Every img2prompt module ``name`` imports: at module level, inside a function, for type checking only, or by a
    string literal that names a module (``importlib.import_module("img2prompt.x")``)."""
    tree = ast.parse(MODULES[name].read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("img2prompt"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("img2prompt"):
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in MODULES else node.module)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("img2prompt."):
            found.add(node.value.split(":")[0])
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: imports(name) for name in MODULES}


def area(name: str) -> str:
    """``stage:<name>``, ``orchestrator`` or ``library`` for a module (the package root is the public API: it
    may hand out a stage's class, as ``img2prompt.Interrogator``)."""
    if name == "img2prompt":
        return "orchestrator"
    top = name.split(".")[1]
    if top in STAGES:
        return f"stage:{top}"
    return "orchestrator" if top in ORCHESTRATORS else "library"


def test_the_import_graph_has_no_cycle():
    state: dict[str, int] = {}  # 1 on the stack, 2 done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for child in sorted(GRAPH[node]):
            if state.get(child) == 1:
                pytest.fail("import cycle: " + " -> ".join([*path[path.index(child):], child]))
            if child not in state:
                visit(child, [*path, child])
        state[node] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])


def test_library_modules_never_import_a_stage_and_stages_never_import_each_other():
    wrong = []
    for module, targets in sorted(GRAPH.items()):
        mine = area(module)
        for target in sorted(targets):
            theirs = area(target)
            if mine == "orchestrator" or theirs in ("library", mine):
                continue
            wrong.append(f"{module} ({mine}) imports {target} ({theirs})")
    assert not wrong, "\n".join(wrong)


def test_the_checker_sees_function_local_type_checking_and_by_name_imports(tmp_path, monkeypatch):
    assert "img2prompt.models.load" in GRAPH["img2prompt.predict"]  # imported inside run_predict
    assert "img2prompt.config" in GRAPH["img2prompt.cli.app"]  # under TYPE_CHECKING (and inside a function)
    fake = tmp_path / "fake.py"
    fake.write_text('import importlib\nmodel = importlib.import_module("img2prompt.train.config")\n')
    monkeypatch.setitem(MODULES, "img2prompt.fake", fake)
    assert imports("img2prompt.fake") == {"img2prompt.train.config"}


def _top_level_imports() -> dict[str, str]:
    """Third-party top-level packages imported anywhere in the package -> one module importing it."""
    found: dict[str, str] = {}
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                tops = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                tops = [node.module.split(".")[0]]
            else:
                continue
            for top in tops:
                if top not in sys.stdlib_module_names and top != "img2prompt":
                    found.setdefault(top, name)
    return found


def _normalised(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


def test_every_imported_package_is_declared_in_pyproject():
    project = tomllib.loads((PACKAGE.parents[1] / "pyproject.toml").read_text())["project"]
    extras = [dep for group in project.get("optional-dependencies", {}).values() for dep in group]  # vllm: an extra
    declared = {_normalised(re.split(r"[<>=!~ \[;]", dep, maxsplit=1)[0])
                for dep in [*project["dependencies"], *extras]}
    provided = {top for dist in declared for top in _top_levels(dist)}  # what the declared distributions install
    missing = [f"{top} (imported by {where})" for top, where in sorted(_top_level_imports().items())
               if top not in provided]
    assert not missing, "undeclared dependencies: " + "; ".join(missing)


def _top_levels(dist: str) -> set[str]:
    """The top-level modules a distribution provides: its own name, and those in its file list when it is installed
    (an extra may not be, e.g. vllm). Much faster than mapping every installed distribution."""
    try:
        files = metadata.files(dist) or []
    except metadata.PackageNotFoundError:
        files = []
    return {f.parts[0].removesuffix(".py") for f in files if f.suffix == ".py" or len(f.parts) > 1} | {
        _normalised(dist).replace("-", "_")}


def test_no_function_is_over_60_lines():
    """Small pieces: a function that grows past 60 lines has a seam to split at (issue 21)."""
    long = [f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines"
            for name, path in sorted(MODULES.items()) for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno >= 60]
    assert not long, long
