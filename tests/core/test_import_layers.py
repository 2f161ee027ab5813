"""Arrows point down: no import cycle between testtime's modules, no upward import between its
layers (the table in DESIGN.md), and no backend importing another backend.

Every import counts, wherever it stands: at the top, inside a function, or under
``TYPE_CHECKING``; so a function-local import cannot hide a cycle or an upward arrow.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import testtime

SRC = Path(testtime.__file__).parent

LOW = {"types", "registry", "confidence", "answers", "chat", "budget"}
"""Helpers every layer from the backends up may use."""
ENGINES = LOW | {"models", "backends", "metered", "traces"}
BELOW_STRATEGIES = ENGINES | {"code", "tools", "verifiers", "policy"}
BELOW_EVAL = BELOW_STRATEGIES | {"strategies", "diffusion", "tasks", "cli_errors"}

LAYERS: dict[str, set[str]] = {
    "types": set(),
    "registry": set(),
    "confidence": set(),
    "answers": {"types"},
    "chat": {"types"},
    "budget": {"types"},
    "models": {"types", "budget"},
    "backends": {"types", "budget", "registry", "chat", "models"},
    "metered": {"types", "budget", "backends"},
    "traces": {"types", "budget", "backends", "metered"},
    "code": {"types", "registry"},
    "tools": {"types", "registry", "code"},
    "verifiers": ENGINES | {"code"},
    "policy": LOW,
    "strategies": BELOW_STRATEGIES,
    "diffusion": LOW | {"models"},
    "tasks": {"types", "registry", "answers", "code"},
    "cli_errors": {"registry", "models", "backends", "tasks"},
    "eval": BELOW_EVAL,
    "serve": BELOW_STRATEGIES | {"strategies", "cli_errors"},
    "distributed": BELOW_EVAL | {"eval", "serve"},
    "cli": BELOW_EVAL | {"eval", "serve", "distributed"},
}
"""Each layer (a top-level module or subpackage of testtime) and the layers it may import."""
PUBLIC_API = set(LAYERS) - {"cli"}
"""What ``testtime/__init__.py`` may re-export."""


@dataclass(frozen=True)
class Import:
    """One import of a testtime module by another."""

    source: str
    target: str
    line: int


def module_name(path: Path) -> str:
    """``testtime.eval.sweep`` for ``.../testtime/eval/sweep.py``; packages by their name."""
    parts = ["testtime", *path.relative_to(SRC).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in SRC.rglob("*.py")}


def known(name: str) -> str | None:
    """The module ``name`` is or lives in (``pkg.mod.attr`` → ``pkg.mod``)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str) -> Iterator[Import]:
    """Every import of a testtime module that ``module`` makes, anywhere in its file."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            names = [f"{base}.{a.name}" for a in node.names] or [base]
        else:
            continue
        for name in names:
            target = known(name)
            if target is not None and target != module and name.startswith("testtime"):
                yield Import(module, target, node.lineno)


def layer(module: str) -> str:
    """The layer a module belongs to: its top-level name under testtime."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "testtime"


GRAPH = {m: list(imports_of(m)) for m in MODULES}


def cycles(graph: dict[str, list[Import]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for edge in graph[v]:
            w = edge.target
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_walk_sees_every_kind_of_import() -> None:
    edges = {(e.source, e.target) for edges in GRAPH.values() for e in edges}
    assert ("testtime.eval.commands", "testtime.eval.report") in edges  # function-local
    assert ("testtime.code.harness", "testtime.code.wire") in edges  # under TYPE_CHECKING
    assert ("testtime.cli", "testtime.eval.commands") in edges  # `from pkg import module`
    assert ("testtime.budget", "testtime.budget.ledger") in edges  # a package's __init__
    assert len(MODULES) > 100


def test_no_import_cycles() -> None:
    assert cycles(GRAPH) == []


def test_the_cycle_finder_finds_one() -> None:
    a, b, c = "testtime.a", "testtime.b", "testtime.c"
    graph = {a: [Import(a, b, 1)], b: [Import(b, a, 1)], c: [Import(c, a, 1)]}
    assert cycles(graph) == [[a, b]]


def test_every_module_belongs_to_a_layer() -> None:
    assert {layer(m) for m in MODULES} - set(LAYERS) - {"testtime"} == set()


def upward_arrows(graph: dict[str, list[Import]]) -> list[str]:
    """Every import of a layer that the importing layer may not use."""
    upward = []
    for edges in graph.values():
        for e in edges:
            source, target = layer(e.source), layer(e.target)
            allowed = PUBLIC_API if source == "testtime" else LAYERS[source]
            if source != target and target not in allowed:
                upward.append(f"{e.source}:{e.line} imports {e.target} ({source} → {target})")
    return upward


def test_arrows_point_down() -> None:
    assert upward_arrows(GRAPH) == []


def test_an_upward_arrow_is_caught() -> None:
    ledger, base, cli = "testtime.budget.ledger", "testtime.strategies.base", "testtime.cli"
    graph = {ledger: [Import(ledger, base, 3)], cli: [Import(cli, base, 4)]}
    assert upward_arrows(graph) == [f"{ledger}:3 imports {base} (budget → strategies)"]


def test_no_backend_imports_another() -> None:
    engines = {m for m, p in MODULES.items() if m.startswith("testtime.backends.")
               and "@backends.register(" in p.read_text(encoding="utf-8")}
    assert {"testtime.backends.embedded", "testtime.backends.openai"} <= engines
    crossing = [f"{e.source}:{e.line} imports {e.target}" for m in engines for e in GRAPH[m]
                if e.target in engines]
    assert crossing == []
