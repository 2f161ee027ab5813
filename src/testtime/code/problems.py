"""Code problems (HumanEval-style ``prompt``/``test``/``entry_point``) run in the sandbox."""

from __future__ import annotations

import ast
import functools

from testtime.code.extract import complete_function
from testtime.code.sandbox import Limits, Mode, RunResult, run_tests
from testtime.types import Problem

REQUIRED = ("prompt", "test", "entry_point")


class CodeProblemError(ValueError):
    """A code problem lacks the metadata needed to run its tests."""


def _meta(problem: Problem) -> tuple[str, str, str]:
    missing = [k for k in REQUIRED if not isinstance(problem.metadata.get(k), str)]
    if problem.kind != "code" or missing:
        raise CodeProblemError(
            f"problem {problem.id!r} is not a runnable code problem "
            f"(kind={problem.kind!r}, missing metadata: {', '.join(missing) or 'none'})")
    return problem.metadata["prompt"], problem.metadata["test"], problem.metadata["entry_point"]


def _is_test(stmt: ast.stmt) -> bool:
    return any(isinstance(node, ast.Assert) and not isinstance(node.test, ast.Constant)
               for node in ast.walk(stmt))


@functools.lru_cache(maxsize=1024)
def split_check(test: str, entry_point: str) -> tuple[tuple[str, bool], ...]:
    """Turn a ``check(candidate)`` test module into steps, one test per asserting statement.

    The module's other statements and the check body's non-asserting statements are setup
    steps, run in order. A check without such statements is one test: ``check(entry)``.
    """
    try:
        tree = ast.parse(test)
    except SyntaxError as exc:
        raise CodeProblemError(f"test code does not parse: {exc}") from None
    setup = [s for s in tree.body if not (isinstance(s, ast.FunctionDef) and s.name == "check")]
    check = next((s for s in tree.body if isinstance(s, ast.FunctionDef) and s.name == "check"),
                 None)
    steps: list[tuple[str, bool]] = [(ast.unparse(s), False) for s in setup]
    if check is None or not check.args.args:
        raise CodeProblemError("test code defines no check(candidate) function")
    body = [(ast.unparse(s), _is_test(s)) for s in check.body]
    if not any(is_test for _, is_test in body):
        return (*steps, (test, False), (f"check({entry_point})", True))
    return (*steps, (f"{check.args.args[0].arg} = {entry_point}", False), *body)


def program_for(problem: Problem, text: str) -> str:
    """The program a candidate's text stands for: the prompt completed by its code."""
    prompt, _, entry_point = _meta(problem)
    return complete_function(prompt, text, entry_point)


@functools.lru_cache(maxsize=4096)
def _run_cached(program: str, steps: tuple[tuple[str, bool], ...], limits: Limits,
                mode: Mode) -> RunResult:
    return run_tests(program, steps, limits, mode)


def run_candidate(problem: Problem, text: str, limits: Limits | None = None,
                  mode: Mode = "auto") -> RunResult:
    """Run a candidate's completed program against the problem's tests, split into steps.

    Results are cached by (program, tests, limits), so a verifier's run and the grader's
    agree and the same code is not run twice.
    """
    _, test, entry_point = _meta(problem)
    return _run_cached(program_for(problem, text), split_check(test, entry_point),
                       limits or Limits(), mode)


def grade(problem: Problem, text: str | None) -> bool:
    """Whether the candidate passes every test of the problem (HumanEval's pass criterion)."""
    if not text:
        return False
    return run_candidate(problem, text).all_passed
