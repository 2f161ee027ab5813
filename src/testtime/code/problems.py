"""Code problems (HumanEval-style ``prompt``/``test``/``entry_point``) run in the sandbox."""

from __future__ import annotations

import ast
import doctest
import functools
import re

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


def _expression(source: str) -> str | None:
    """``source`` as one normalised expression (comments dropped), or None if it is not one."""
    try:
        return ast.unparse(ast.parse(source, mode="eval"))
    except SyntaxError:
        return None


def _literal(source: str) -> bool:
    try:
        ast.literal_eval(source.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False
    return True


def _literal_call(source: str) -> bool:
    """Whether ``source`` is a call whose arguments are all literals (prose has free names)."""
    try:
        node = ast.parse(source, mode="eval").body
    except SyntaxError:
        return False
    return isinstance(node, ast.Call) and all(
        _literal(ast.unparse(a)) for a in [*node.args, *(k.value for k in node.keywords)])


def _silent_example(source: str) -> list[tuple[str, bool]]:
    """An example without output: a comparison is a test, a statement is setup, else nothing."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    if len(tree.body) == 1 and isinstance(tree.body[0], ast.Expr):
        expr = tree.body[0].value
        return [(f"assert {ast.unparse(expr)}", True)] if isinstance(expr, ast.Compare) else []
    return [(ast.unparse(tree), False)]


def _docstring(prompt: str, entry_point: str) -> str:
    try:
        tree = ast.parse(prompt)
    except SyntaxError:
        return prompt
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == entry_point:
            return ast.get_docstring(node) or ""
    return prompt


@functools.lru_cache(maxsize=1024)
def example_steps(prompt: str, entry_point: str) -> tuple[tuple[str, bool], ...]:
    """Tests from the examples in the entry point's docstring: one test per example.

    These are what a user can see, unlike the grading tests. Examples are doctest's ``>>>``
    lines and lines like ``f(x) == y`` or ``f(x) ➞ y`` with literal arguments and output. An
    output that is a Python expression is compared by value (``f(x) == [1, 2]``), any other by
    its ``repr``; an example without output is a test if it is a comparison, setup if it is a
    statement. A prompt without usable examples gets one test: the program defines the entry
    point. Docstrings can be wrong (HumanEval/47, 116 and 148 are): the verifier trusts them.
    """
    doc = _docstring(prompt, entry_point)
    steps: list[tuple[str, bool]] = []
    try:
        examples = doctest.DocTestParser().get_examples(doc)
    except ValueError:  # a docstring doctest cannot parse: no usable examples
        examples = []
    for ex in examples:
        call, want = _expression(ex.source), ex.want.strip()
        if not want:
            steps.extend(_silent_example(ex.source))
        elif call is not None and (value := _expression(want)) is not None:
            steps.append((f"assert ({call}) == ({value})", True))
        elif call is not None:
            steps.append((f"assert repr({call}) == {want!r}", True))
    arrow = re.compile(rf"^\s*({re.escape(entry_point)}\(.*\))\s*(?:==>|==|=>|➞|->)\s*(.+?)\.?$")
    for line in doc.splitlines():
        m = arrow.match(line)
        if m and _literal_call(m[1]) and _literal(m[2]):
            steps.append((f"assert ({_expression(m[1])}) == ({_expression(m[2])})", True))
    if not any(is_test for _, is_test in steps):
        steps.append((f"assert callable({entry_point})", True))
    return tuple(steps)


def code_prompt(problem: Problem) -> tuple[str, str]:
    """A code problem's prompt and entry point (its tests are not needed, nor read)."""
    meta = problem.metadata
    if problem.kind != "code" or not all(isinstance(meta.get(k), str)
                                         for k in ("prompt", "entry_point")):
        raise CodeProblemError(f"problem {problem.id!r} is not a code problem with a prompt "
                               "and an entry point")
    return meta["prompt"], meta["entry_point"]


def program_for(problem: Problem, text: str) -> str:
    """The program a candidate's text stands for: the prompt completed by its code."""
    prompt, entry_point = code_prompt(problem)
    return complete_function(prompt, text, entry_point)


@functools.lru_cache(maxsize=4096)
def _run_cached(program: str, steps: tuple[tuple[str, bool], ...], limits: Limits,
                mode: Mode, prompt: str, entry_point: str) -> RunResult:
    return run_tests(program, steps, limits, mode, trusted=prompt, entry_point=entry_point)


def run_candidate(problem: Problem, text: str, limits: Limits | None = None,
                  mode: Mode = "auto", *, examples: bool = False) -> RunResult:
    """Run a candidate's completed program against the problem's tests, split into steps.

    With ``examples`` the tests are the prompt's docstring examples instead of the grading
    tests. Results are cached by (program, tests, limits), so a verifier's run and the
    grader's agree and the same code is not run twice. The tests use the prompt's own helper
    functions (run beside them), never a candidate's redefinition of them.
    """
    prompt, test, entry_point = _meta(problem)
    steps = example_steps(prompt, entry_point) if examples else split_check(test, entry_point)
    return _run_cached(program_for(problem, text), steps, limits or Limits(), mode, prompt,
                       entry_point)


def grade(problem: Problem, text: str | None) -> bool:
    """Whether the candidate passes every test of the problem (HumanEval's pass criterion)."""
    if not text:
        return False
    return run_candidate(problem, text).all_passed
