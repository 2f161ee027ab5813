"""Tests written by a model for a problem without tests, and CodeT's dual-agreement choice.

A generated test is a call of the entry point with literal arguments and, where the model
gave one, the literal value it expects (``assert f(1, 2) == 3``). Every candidate is called
on every generated input in the sandbox; candidates that give the same outputs on all inputs
form a cluster, and a cluster's score is its size times the number of generated tests its
outputs pass (CodeT, Chen et al. 2022). Only inputs and expected values are read from the
model's text, as data: none of its code runs anywhere.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from testtime.code import wire
from testtime.code.sandbox import RunResult

_FENCE = re.compile(r"```[a-zA-Z0-9_+-]*\n?")


@dataclass(frozen=True)
class GeneratedTest:
    """One call of the entry point with plain arguments, and the output the model expects."""

    args: tuple[Any, ...]
    kwargs: tuple[tuple[str, Any], ...]
    expected: Any = None
    has_expected: bool = False

    @property
    def key(self) -> str:
        """The call's identity (its arguments), as canonical text."""
        return canonical((self.args, dict(self.kwargs)))


def canonical(value: object) -> str:
    """Order-independent text for a plain value (sets and dicts sorted), for clustering."""
    def norm(v: Any) -> Any:
        if type(v) in (set, frozenset):
            return {type(v).__name__: sorted(wire.dumps(norm(x)) for x in v)}
        if type(v) is dict:
            return {"d": sorted([wire.dumps(norm(k)), wire.dumps(norm(x))]
                                for k, x in v.items())}
        if type(v) in (list, tuple):
            return {type(v).__name__: [norm(x) for x in v]}
        return wire.to_plain(v)
    return wire.dumps(norm(value))


def _literal(node: ast.expr) -> Any:
    value = ast.literal_eval(node)
    wire.to_plain(value)
    return value


def _call(node: ast.expr, entry_point: str) -> tuple[tuple[Any, ...], tuple[tuple[str, Any], ...]]:
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id == entry_point):
        raise ValueError("not a call of the entry point")
    args = tuple(_literal(a) for a in node.args)
    kwargs = tuple((k.arg, _literal(k.value)) for k in node.keywords if k.arg is not None)
    if len(kwargs) != len(node.keywords):
        raise ValueError("**kwargs")
    return args, kwargs


def _test(expr: ast.expr, entry_point: str) -> GeneratedTest | None:
    try:
        if isinstance(expr, ast.Compare) and len(expr.ops) == 1 and isinstance(
                expr.ops[0], ast.Eq):
            args, kwargs = _call(expr.left, entry_point)
            return GeneratedTest(args, kwargs, _literal(expr.comparators[0]), True)
        if isinstance(expr, ast.UnaryOp) and isinstance(expr.op, ast.Not):
            args, kwargs = _call(expr.operand, entry_point)
            return GeneratedTest(args, kwargs, False, True)
        if isinstance(expr, ast.Call):
            args, kwargs = _call(expr, entry_point)
            return GeneratedTest(args, kwargs)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError, wire.Unplain):
        return None
    return None


def parse_tests(text: str, entry_point: str) -> list[GeneratedTest]:
    """The tests in a model's text: ``assert f(...) == v``, ``assert not f(...)``, ``f(...)``.

    Lines are read one at a time; anything that is not such a line with literal arguments
    and a literal expected value is skipped.
    """
    found: list[GeneratedTest] = []
    for raw in _FENCE.sub("", text).splitlines():
        line = raw.strip().removeprefix(">>>").strip()
        if entry_point not in line:
            continue
        try:
            tree = ast.parse(line)
        except SyntaxError:
            continue
        if len(tree.body) != 1:
            continue
        stmt = tree.body[0]
        expr = stmt.test if isinstance(stmt, ast.Assert) else (
            stmt.value if isinstance(stmt, ast.Expr) else None)
        test = _test(expr, entry_point) if expr is not None else None
        if test is not None:
            found.append(test)
    return found


def _equal(got: object, expected: object) -> bool:
    try:
        return bool(got == expected)
    except Exception:
        return False


def select(tests: Sequence[GeneratedTest], inputs: Sequence[GeneratedTest],
           runs: Sequence[RunResult | None]) -> list[tuple[float, str]]:
    """CodeT dual agreement over the pass matrix: a (score in [0, 1], detail) per candidate.

    ``inputs`` are the distinct calls (``runs[i].values`` answer them in order). A candidate
    that did not load, or failed every call, scores 0. Among the rest, a cluster (the same
    outputs on every input) scores its size times the tests its outputs pass; when no
    cluster passes any test (or the model gave no expected values) the size alone counts.
    """
    index = {t.key: i for i, t in enumerate(inputs)}
    signatures: list[tuple[str, ...] | None] = []
    for run in runs:
        if run is None or not run.loaded or not any(run.passed):
            signatures.append(None)
            continue
        signatures.append(tuple(canonical(run.values[i]) if ok else "!error"
                                for i, ok in enumerate(run.passed)))
    clusters: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for c, sig in enumerate(signatures):
        if sig is not None:
            clusters[sig].append(c)
    checked = [t for t in tests if t.has_expected]
    passing: dict[tuple[str, ...], int] = {}
    for sig, members in clusters.items():
        rep = runs[members[0]]
        assert rep is not None
        passing[sig] = sum(bool(rep.passed[index[t.key]])
                           and _equal(rep.values[index[t.key]], t.expected) for t in checked)
    use_tests = any(passing.values())
    raw = {sig: len(members) * (passing[sig] if use_tests else 1)
           for sig, members in clusters.items()}
    best = max(raw.values(), default=0) or 1
    out: list[tuple[float, str]] = []
    for sig in signatures:
        if sig is None:
            out.append((0.0, "no output on any generated input"))
            continue
        out.append((raw[sig] / best,
                    f"cluster of {len(clusters[sig])}, passes {passing[sig]}/{len(checked)} "
                    f"generated tests on {len(inputs)} inputs"))
    return out
