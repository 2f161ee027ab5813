"""Code extraction, test splitting, the tests verifier, the humaneval task and its grading."""

from __future__ import annotations

import pytest

from testtime.backends.scripted import ScriptedBackend
from testtime.code import (
    CodeProblemError,
    complete_function,
    example_steps,
    extract_code,
    grade,
    split_check,
)
from testtime.eval.runner import run_problems, summarise
from testtime.strategies import make_strategy
from testtime.tasks import TaskError, make_task
from testtime.types import Candidate, Completion, Problem
from testtime.verifiers import VerifyContext, make_verifier

PROMPT = 'def add(a: int, b: int) -> int:\n    """Add two numbers."""\n'
TEST = ("def check(candidate):\n    assert candidate(1, 2) == 3\n"
        "    assert candidate(0, 0) == 0\n    assert candidate(-1, 5) == 4\n    assert True\n")
RIGHT = "Sure:\n```python\ndef add(a, b):\n    return a + b\n```\n"
HALF = "```python\ndef add(a, b):\n    return a + b if a > 0 else 0\n```"
WRONG = "```python\ndef add(a, b):\n    return a * b\n```"


def problem() -> Problem:
    return Problem(id="toy/0", kind="code", question=PROMPT, reference=PROMPT + "    return a+b",
                   metadata={"prompt": PROMPT, "test": TEST, "entry_point": "add"})


def cand(text: str) -> Candidate:
    return Candidate(text=text, answer=extract_code(text), completion=Completion(text=text))


def test_extract_code_takes_the_last_python_block() -> None:
    text = "```python\nx = 1\n```\nthen\n```\ny = 2\n```\n```text\nnot code\n```"
    assert extract_code(text) == "y = 2\n"
    assert extract_code("```python\nz = 3\n") == "z = 3\n"
    assert extract_code("plain = 1") == "plain = 1\n"


def test_complete_function_keeps_prompt_helpers_and_accepts_bodies() -> None:
    prompt = "def helper():\n    return 2\n\n" + PROMPT
    full = complete_function(prompt, RIGHT, "add")
    assert "def helper" in full and full.rstrip().endswith("return a + b")
    body = complete_function(PROMPT, "    return a + b\n", "add")
    unindented = complete_function(PROMPT, "return a + b\n", "add")
    for program in (body, unindented):
        ns: dict[str, object] = {}
        exec(program, ns)
        assert ns["add"](2, 3) == 5  # type: ignore[operator]


def test_split_check_makes_one_test_per_assert() -> None:
    steps = split_check(TEST, "add")
    tests = [src for src, is_test in steps if is_test]
    assert len(tests) == 3
    assert ("candidate = add", False) in steps
    with pytest.raises(CodeProblemError):
        split_check("x = (", "add")
    with pytest.raises(CodeProblemError):
        split_check("x = 1", "add")


async def test_tests_verifier_scores_fraction_passed_and_bills_seconds() -> None:
    verifier = make_verifier("tests")
    ctx = VerifyContext()
    scores = await verifier.score(problem(), [cand(RIGHT), cand(HALF), cand(WRONG),
                                              cand("no code at all (")], ctx)
    assert [round(s.value, 3) for s in scores] == [1.0, 0.667, 0.333, 0.0]
    assert "did not load" in (scores[3].detail or "")
    assert ctx.ledger.usage.verifier_tokens == 0
    assert ctx.ledger.usage.verifier_calls == 4
    assert ctx.ledger.usage.verifier_seconds > 0


DOC_PROMPT = (
    'def add(a: int, b: int) -> int:\n'
    '    """Add two numbers.\n\n'
    '    >>> add(1, 2)  # small\n'
    '    3\n'
    '    >>> x = 5\n'
    '    >>> add(x, 0) == 5\n'
    '    >>> str(add(2, 2))\n'
    "    '4'\n\n"
    '    add(-1, 5) ➞ 4\n'
    '    add(n, m) == the sum of n and m\n'
    '    """\n')


def test_example_steps_come_from_the_docstring_only() -> None:
    steps = example_steps(DOC_PROMPT, "add")
    assert steps == (("assert (add(1, 2)) == (3)", True), ("x = 5", False),
                     ("assert add(x, 0) == 5", True), ("assert (str(add(2, 2))) == ('4')", True),
                     ("assert (add(-1, 5)) == (4)", True))
    assert example_steps(PROMPT, "add") == (("assert callable(add)", True),)
    assert example_steps("def add(:\n >>> add(1)\n 1\n", "add") == (
        ("assert (add(1)) == (1)", True),)


async def test_tests_verifier_from_examples_never_reads_the_grading_tests() -> None:
    hidden_only = Problem(id="toy/1", kind="code", question=DOC_PROMPT,
                          metadata={"prompt": DOC_PROMPT, "entry_point": "add",
                                    "test": "def check(candidate):\n    assert False\n"})
    verifier = make_verifier("tests:source=examples")
    scores = await verifier.score(hidden_only, [cand(RIGHT), cand(HALF), cand(WRONG)],
                                  VerifyContext())
    assert [round(s.value, 3) for s in scores] == [1.0, 0.75, 0.25]
    assert not grade(hidden_only, RIGHT)


def test_humaneval_canonical_solutions_pass_their_docstring_examples() -> None:
    from testtime.code import run_candidate

    problems = make_task("humaneval").problems(limit=12)
    assert sum(example_steps(p.metadata["prompt"], p.metadata["entry_point"])[-1][0]
               != f"assert callable({p.metadata['entry_point']})"
               for p in problems) >= 10
    for p in problems:
        assert run_candidate(p, p.reference or "", examples=True).all_passed, p.id


def test_grade_requires_all_tests() -> None:
    assert grade(problem(), RIGHT)
    assert not grade(problem(), HALF)
    assert not grade(problem(), None)
    with pytest.raises(CodeProblemError):
        grade(Problem(id="m", question="1+1"), RIGHT)


def test_humaneval_task_loads_and_canonical_solutions_pass() -> None:
    problems = make_task("humaneval").problems(limit=5)
    assert [p.id for p in problems] == [f"HumanEval/{i}" for i in range(5)]
    assert all(p.kind == "code" for p in problems)
    assert all(grade(p, p.reference) for p in problems)
    assert not grade(problems[0], problems[1].reference)
    assert make_task("humaneval:start=160").problems()[0].id == "HumanEval/160"
    with pytest.raises(TaskError):
        make_task("humaneval:start=x")
    with pytest.raises(TaskError):
        make_task("humaneval:start=500")


async def test_best_of_n_with_tests_picks_the_passing_candidate_and_records_grades() -> None:
    texts = [WRONG, HALF, RIGHT, WRONG]
    backend = ScriptedBackend(responder=lambda prompt, i, req: texts[i % len(texts)])
    spec = "best-of-n:n=4,verifier=tests"
    records, seconds = await run_problems([problem()], make_strategy(spec), backend, spec=spec)
    rec = records[0]
    assert rec.get("error") is None, rec.get("error")
    assert rec["correct"] is True and "return a + b" in rec["answer"]
    assert [c["correct"] for c in rec["candidates"]] == [False, False, True, False]
    summary = summarise(records, strategy=spec, backend="scripted", task="toy",
                        wall_seconds=seconds)
    assert summary.accuracy == 1.0 and summary.sample_accuracy == 0.25
    assert summary.pass_at_k == 1.0 and summary.usage.verifier_seconds > 0


def test_tests_use_the_prompts_helpers_not_the_candidates() -> None:
    """HumanEval/32's test checks ``poly(coeffs, find_zero(coeffs))``: redefining poly fails."""
    p = make_task("humaneval").problems(limit=33)[32]
    cheat = ("```python\ndef poly(xs, x):\n    return 0\n\n"
             "def find_zero(xs):\n    return 0.0\n```")
    assert not grade(p, cheat)
    assert grade(p, p.reference)
