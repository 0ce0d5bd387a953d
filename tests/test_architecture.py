"""The import graph of `streams`, read from the source (AST), against the rules of the layout.

- no import cycle, between modules or between packages;
- `streams/domain` is pure: no framework, no client, nothing of `streams` outside the domain;
- Faust's, mode's and aiokafka's insides stay in one package, `streams/pipeline/faust_adapter`;
- the product never imports the tooling (benchmarks, simulator, embedded broker).

Every import counts, also those inside functions (a lazy import is still a dependency); only
imports under `if TYPE_CHECKING:` are left out.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from tests.pipeline.test_faust_contract import PRIVATE_MEMBERS

ROOT = Path(__file__).resolve().parents[1]
ADAPTER = "streams.pipeline.faust_adapter"
# Tooling: `streams.tooling` (where these are moving) and the modules it is made of today.
TOOLING_PACKAGE = "streams.tooling"
TOOLING_MODULES = ("streams.bench", "streams.bench_soak", "streams.simulate", "streams.broker")
# The command line dispatches to the worker and to every tool alike: neither side.
ENTRY_POINT = "streams.cli"
FRAMEWORKS = ("faust", "mode", "aiokafka", "kafka", "prometheus_client")


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported module (or package), fully qualified
    names: tuple[str, ...]  # the names taken with `from target import ...`
    line: int


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((ROOT / "streams").rglob("*.py"))}


def _type_checking_only(tree: ast.AST) -> set[int]:
    """ids of import nodes under `if TYPE_CHECKING:`."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skip


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


@cache
def imports() -> tuple[Import, ...]:
    known = modules()
    found: list[Import] = []
    for module, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _type_checking_only(tree)
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                found.extend(Import(module, a.name, (), node.lineno) for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(module, path.name == "__init__.py", node)
                names = tuple(a.name for a in node.names)
                # `from streams.export import web` imports the module streams.export.web; the
                # package itself counts only for names that are not its submodules.
                subs = [n for n in names if f"{target}.{n}" in known]
                found.extend(Import(module, f"{target}.{n}", (), node.lineno) for n in subs)
                if len(subs) < len(names):
                    found.append(Import(module, target, names, node.lineno))
    return tuple(found)


def internal_edges() -> set[tuple[str, str]]:
    """(importer, imported) between modules of `streams` (the root package left out)."""
    known = modules()
    return {(i.source, i.target) for i in imports()
            if i.target in known and i.target != "streams" and i.target != i.source}


def _cycles(edges: set[tuple[str, str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def package_of(module: str) -> str:
    """The unit of the package graph: a subpackage of `streams`, or a top-level module."""
    parts = module.split(".")
    return ".".join(parts[:2])


def is_tooling(module: str) -> bool:
    return (module == TOOLING_PACKAGE or module.startswith(TOOLING_PACKAGE + ".")
            or module in TOOLING_MODULES)


def is_product(module: str) -> bool:
    return not is_tooling(module) and module != ENTRY_POINT


def in_adapter(module: str) -> bool:
    return module == ADAPTER or module.startswith(ADAPTER + ".")


def _top(name: str) -> str:
    return name.split(".")[0]


# -- the rules -------------------------------------------------------------------------------


def test_the_graph_is_read() -> None:
    """The rules below are only as good as the graph: it must see the known edges."""
    edges = internal_edges()
    assert ("streams.worker", "streams.export.web") in edges
    assert ("streams.pipeline.runtime", "streams.domain.aggregates") in edges
    assert ("streams.export.prometheus", "streams.state") in edges
    assert len(modules()) > 30


def test_no_module_import_cycle() -> None:
    cycles = _cycles(internal_edges())
    assert not cycles, f"modules importing each other in a circle: {cycles}"


def test_no_package_import_cycle() -> None:
    edges = {(package_of(a), package_of(b)) for a, b in internal_edges()}
    cycles = _cycles({(a, b) for a, b in edges if a != b})
    assert not cycles, f"packages importing each other in a circle: {cycles}"


def test_the_cycle_check_can_fail() -> None:
    """The old layout (pipeline.app → export.web → pipeline.runtime) is caught."""
    old = {("streams.pipeline.app", "streams.export.web"),
           ("streams.export.web", "streams.pipeline.runtime"),
           ("streams.pipeline.runtime", "streams.domain.facts")}
    assert _cycles({(package_of(a), package_of(b)) for a, b in old}) == [
        ["streams.export", "streams.pipeline"]]


def test_domain_imports_no_framework_and_nothing_outside_the_domain() -> None:
    bad = [f"{i.source}:{i.line} imports {i.target}" for i in imports()
           if i.source.startswith("streams.domain")
           and (_top(i.target) in FRAMEWORKS
                or (_top(i.target) == "streams" and not i.target.startswith("streams.domain")))]
    assert not bad, bad


def test_only_the_adapter_imports_faust_mode_or_aiokafka() -> None:
    """Product code outside the adapter imports none of the three. The entry point may start a
    `faust.Worker`; the tooling may use the public top-level APIs (aiokafka's clients for
    probes, a plain `faust.App` as a baseline), never a submodule, and never mode."""
    bad = []
    for i in imports():
        top = _top(i.target)
        if top not in ("faust", "mode", "aiokafka") or in_adapter(i.source):
            continue
        if i.source == ENTRY_POINT and i.target == "faust":
            continue
        if is_tooling(i.source) and i.target in ("aiokafka", "faust"):
            continue
        bad.append(f"{i.source}:{i.line} imports {i.target}")
    assert not bad, bad


def test_only_the_adapter_touches_faust_private_members() -> None:
    """No attribute named like a private member the adapter relies on (see the contract test)
    is read or written outside the adapter."""
    bad = []
    for module, path in modules().items():
        if in_adapter(module):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in PRIVATE_MEMBERS:
                bad.append(f"{module}:{node.lineno} .{node.attr}")
    assert not bad, bad


def _tooling_imports() -> Iterator[str]:
    for i in imports():
        if is_product(i.source) and is_tooling(i.target):
            yield f"{i.source}:{i.line} imports {i.target}"


def test_product_never_imports_tooling() -> None:
    bad = list(_tooling_imports())
    assert not bad, bad


@pytest.mark.parametrize("module", [*TOOLING_MODULES, TOOLING_PACKAGE, "streams.tooling.bench"])
def test_tooling_names_are_recognised(module: str) -> None:
    assert is_tooling(module) and not is_product(module)
    assert is_product("streams.worker") and is_product("streams.pipeline.runtime")
