"""Grading one answer: code problems by running their tests, others by answer equivalence."""

from __future__ import annotations

from testtime.answers import is_correct
from testtime.code.problems import REQUIRED
from testtime.code.problems import grade as grade_code
from testtime.types import Problem


def gradable(problem: Problem) -> bool:
    """Whether answers to ``problem`` can be graded at all."""
    return is_code(problem) or problem.reference is not None


def is_code(problem: Problem) -> bool:
    """Whether ``problem`` is a code problem carrying its tests."""
    return problem.kind == "code" and all(k in problem.metadata for k in REQUIRED)


def grade(problem: Problem, answer: str | None, text: str | None) -> bool | None:
    """True/False for a gradable problem (code: all tests pass on ``text``), else None."""
    if is_code(problem):
        return grade_code(problem, text)
    if problem.reference is None:
        return None
    return is_correct(answer, problem.reference)
