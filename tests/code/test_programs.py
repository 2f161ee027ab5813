"""Model-written programs in the sandbox: what they printed, and honest failures."""

from __future__ import annotations

import pytest

from testtime.code.programs import run_program
from testtime.code.sandbox import Limits, available

pytestmark = pytest.mark.skipif(not (available("namespace") or available("userns")),
                                reason="needs a real sandbox (root or user namespaces)")
FAST = Limits(wall_seconds=4, cpu_seconds=1, memory_mb=256)


def test_the_result_is_the_last_printed_line_else_the_answer_variable() -> None:
    printed = run_program("x = 6\nprint('working')\nprint(x * 7)\n", FAST)
    assert printed.ok and printed.result == "42" and printed.stdout == "working\n42\n"
    assert printed.status == "exited" and printed.seconds > 0
    silent = run_program("answer = 6 * 7\n", FAST)
    assert silent.ok and silent.stdout == "" and silent.result == "42"
    assert run_program("x = 1\n", FAST).result is None
    exits = run_program("import sys\nprint(5)\nsys.exit(0)\n", FAST)
    assert exits.ok and exits.result == "5"


@pytest.mark.parametrize(("source", "why"), [
    ("x = 1 / 0\n", "ZeroDivisionError"),
    ("def f(:\n", "SyntaxError"),
    ("import sys\nsys.exit(3)\n", "SystemExit: 3"),
    ("while True:\n    pass\n", "did not finish"),
    ("while True:\n    print('spam')\n", "did not finish"),
    ("print('x' * 100000)\n", "printed more than 4000 characters"),
    ("x = ' ' * 10**10\n", "MemoryError"),
    ("import os\nprint(42)\nos._exit(0)\n", "did not finish"),
    ("import socket\nsocket.create_connection(('127.0.0.1', 80))\n", "not allowed"),
])
def test_a_failing_program_gives_no_result_and_says_why(source: str, why: str) -> None:
    run = run_program(source, FAST)
    assert not run.ok and run.result is None
    assert run.error is not None and why in run.error, run.error
    assert why in run.feedback()


def test_the_traceback_shows_the_programs_own_line() -> None:
    run = run_program("a = 2\nb = a + missing\n", FAST)
    assert run.error is not None
    assert 'File "<program>", line 2' in run.error and "b = a + missing" in run.error
    assert "testtime_program_run" not in run.error
