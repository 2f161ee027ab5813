"""Running candidate code against tests in a sandbox, and grading code problems."""

from testtime.code.extract import complete_function, extract_code
from testtime.code.problems import (
    CodeProblemError,
    example_steps,
    grade,
    run_candidate,
    split_check,
)
from testtime.code.sandbox import Limits, RunResult, SandboxError, run_calls, run_tests

__all__ = [
    "CodeProblemError",
    "Limits",
    "RunResult",
    "SandboxError",
    "complete_function",
    "example_steps",
    "extract_code",
    "grade",
    "run_calls",
    "run_candidate",
    "run_tests",
    "split_check",
]
