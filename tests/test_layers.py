"""The package's layers, read from the source: who may import whom, and no import cycles.

The rules (DESIGN.md, issue 7): parts (``components/``) know nothing of data, Lightning
modules or evaluation; the data package knows nothing of objectives, models or Lightning
modules; and no two mmzoo modules import each other, at module level or lazily inside a
function (a lazy cycle is still a cycle: it only moves the failure to run time). Imports
are read from each module's AST, so a new ``import`` anywhere in a function counts.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import mmzoo

SRC = Path(mmzoo.__file__).parent

# (importer prefix, forbidden prefixes)
FORBIDDEN = [
    ("mmzoo.components", ("mmzoo.data", "mmzoo.lit", "mmzoo.eval", "mmzoo.models", "mmzoo.objectives")),
    ("mmzoo.data", ("mmzoo.objectives", "mmzoo.lit", "mmzoo.models")),
]

KNOWN_CYCLES: list[tuple[str, ...]] = []


def module_files() -> dict[str, Path]:
    """``{"mmzoo.data.webdata": path, "mmzoo.data": path/__init__.py, ...}``."""
    out = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _type_checking_only(tree: ast.AST) -> set[int]:
    """ids of import nodes under ``if TYPE_CHECKING:`` (never executed: not a runtime edge)."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skip


def imports_of(name: str, path: Path, modules: set[str], runtime_only: bool = False) -> set[str]:
    """The mmzoo modules ``name`` imports anywhere in its file (top level or in functions).

    ``from pkg import sub`` counts as importing ``pkg.sub`` when that is a module, else ``pkg``.
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    skip = _type_checking_only(tree) if runtime_only else set()
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                found.add(sub if sub in modules else source)
    return {m for m in found if m in modules and m != name}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    files = module_files()
    return {name: imports_of(name, path, set(files), runtime_only=True) for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[tuple[str, ...]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[tuple[str, ...]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(tuple(sorted(component)))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def test_the_reader_sees_every_kind_of_import(tmp_path: Path) -> None:
    """The baseline: top-level, lazy, relative and ``from pkg import module`` imports are all edges."""
    pkg = tmp_path / "mmzoo" / "data"
    pkg.mkdir(parents=True)
    source = (
        "from __future__ import annotations\n"
        "from typing import TYPE_CHECKING\n"
        "import mmzoo.types\n"
        "from . import shards\n"
        "from ..objectives.lm import IGNORE_INDEX\n"
        "if TYPE_CHECKING:\n    from mmzoo.lit import base\n"
        "def f():\n    from mmzoo import api\n    from mmzoo.components import tokenization\n"
    )
    (pkg / "x.py").write_text(source)
    modules = {
        "mmzoo", "mmzoo.types", "mmzoo.data", "mmzoo.data.x", "mmzoo.data.shards", "mmzoo.objectives",
        "mmzoo.objectives.lm", "mmzoo.lit", "mmzoo.lit.base", "mmzoo.api", "mmzoo.components",
        "mmzoo.components.tokenization",
    }  # fmt: skip
    common = {
        "mmzoo.types",
        "mmzoo.data.shards",
        "mmzoo.objectives.lm",
        "mmzoo.api",
        "mmzoo.components.tokenization",
    }
    assert imports_of("mmzoo.data.x", pkg / "x.py", modules) == common | {"mmzoo.lit.base"}
    assert imports_of("mmzoo.data.x", pkg / "x.py", modules, runtime_only=True) == common


def test_cycle_finder_finds_lazy_and_long_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a", "e"}, "e": {"d"}, "f": set()}
    assert cycles(graph) == [("a", "b", "c"), ("d", "e")]


@pytest.mark.parametrize(("importer", "forbidden"), FORBIDDEN)
def test_layer_imports_nothing_above_it(importer: str, forbidden: tuple[str, ...]) -> None:
    files = module_files()
    bad = []
    for name, path in files.items():
        if name == importer or name.startswith(importer + "."):
            for target in imports_of(name, path, set(files)):  # TYPE_CHECKING imports count here
                if target.startswith(forbidden):
                    bad.append(f"{name} imports {target}")
    assert not bad, bad


def test_no_import_cycles(graph: dict[str, set[str]]) -> None:
    assert cycles(graph) == KNOWN_CYCLES


def test_data_generator_and_writer_are_layered(graph: dict[str, set[str]]) -> None:
    """The cycle issue 7 named: the writer uses the generator, never the other way round."""
    assert "mmzoo.data.shapes" in graph["mmzoo.data.shards"]
    assert not graph["mmzoo.data.shapes"]


def test_ignore_index_has_one_home() -> None:
    from mmzoo.data import conversation
    from mmzoo.objectives import lm
    from mmzoo.types import IGNORE_INDEX

    assert lm.IGNORE_INDEX is conversation.IGNORE_INDEX is IGNORE_INDEX == -100
