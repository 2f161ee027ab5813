"""Tests written by the model (CodeT): parsing them, the pass matrix, and the verifier."""

from __future__ import annotations

from testtime.backends.scripted import ScriptedBackend
from testtime.code import extract_code
from testtime.code.generated import canonical, parse_tests
from testtime.eval.runner import run_problems, summarise
from testtime.strategies import make_strategy
from testtime.types import Candidate, Completion, Problem, Prompt
from testtime.verifiers import VerifyContext, make_verifier

PROMPT = 'def add(a: int, b: int) -> int:\n    """Add two numbers."""\n'
RIGHT = "```python\ndef add(a, b):\n    return a + b\n```"
RIGHT_TOO = "```python\ndef add(x, y):\n    return sum([x, y])\n```"
WRONG = "```python\ndef add(a, b):\n    return a * b\n```"
CRASH = "```python\ndef add(a, b):\n    raise SystemExit(0)\n```"
WRITTEN = ("Here are tests:\n```python\n"
           "assert add(1, 2) == 3\n"
           "assert add(2, 2) == 4  # equal\n"
           "assert add(0, 5) == 6\n"
           "assert add(x, 1) == 2\n"
           "assert not add(0, 0)\n"
           "add(-1, -1)\n"
           "import os; os.system('echo pwned')\n"
           "assert other(1) == 1\n```")


def problem() -> Problem:
    """A code problem whose own tests would fail everything: the verifier must not read them."""
    return Problem(id="toy/gen", kind="code", question=PROMPT,
                   metadata={"prompt": PROMPT, "entry_point": "add",
                             "test": "def check(candidate):\n    assert False\n"})


def cand(text: str) -> Candidate:
    return Candidate(text=text, answer=extract_code(text), completion=Completion(text=text))


def test_parse_keeps_literal_calls_and_expected_values_only() -> None:
    tests = parse_tests(WRITTEN, "add")
    assert [(t.args, t.expected, t.has_expected) for t in tests] == [
        ((1, 2), 3, True), ((2, 2), 4, True), ((0, 5), 6, True), ((0, 0), False, True),
        ((-1, -1), None, False)]
    assert parse_tests("assert add(*[1, 2]) == 3\nassert add(a=1, b=2) == 3", "add")[0].kwargs \
        == (("a", 1), ("b", 2))


def test_canonical_ignores_set_and_dict_order_but_not_types() -> None:
    assert canonical({3, 1, 2}) == canonical({2, 3, 1})
    assert canonical({"b": 1, "a": 2}) == canonical({"a": 2, "b": 1})
    assert canonical(1) != canonical(True) != canonical(1.0)
    assert canonical((1, 2)) != canonical([1, 2])


def writer(prompt: Prompt, i: int, req: object) -> str:
    text = prompt.messages[-1].content
    if "test cases" in text:
        return WRITTEN
    return [WRONG, RIGHT, CRASH, RIGHT_TOO][i % 4]


async def test_dual_agreement_prefers_the_cluster_that_passes_generated_tests() -> None:
    backend = ScriptedBackend(responder=writer)
    ctx = VerifyContext(backend=backend)
    verifier = make_verifier("codet:samples=1")
    scores = await verifier.score(problem(), [cand(RIGHT), cand(WRONG), cand(RIGHT_TOO),
                                              cand(CRASH), cand("not code (")], ctx)
    values = [s.value for s in scores]
    assert values[0] == values[2] == 1.0
    assert 0 < values[1] < 1.0 and values[3] == values[4] == 0.0
    assert "cluster of 2, passes 3/4" in (scores[0].detail or "")
    assert ctx.ledger.usage.verifier_tokens > 0
    assert ctx.ledger.usage.sandbox_runs == 5 and ctx.ledger.usage.sandbox_seconds > 0
    again = await verifier.score(problem(), [cand(WRONG)], ctx)
    assert again[0].value == 1.0  # alone, the only cluster is the best one
    assert ctx.ledger.usage.verifier_calls == 1 + 5 + 1  # tests written once per problem


async def test_best_of_n_with_generated_tests_through_the_runner() -> None:
    backend = ScriptedBackend(responder=writer)
    spec = "best-of-n:n=4,verifier=[codet:samples=1]"
    records, seconds = await run_problems([problem()], make_strategy(spec), backend, spec=spec)
    rec = records[0]
    assert rec.get("error") is None, rec.get("error")
    assert "a + b" in rec["answer"] or "sum(" in rec["answer"]
    summary = summarise(records, strategy=spec, backend="scripted", task="toy",
                        wall_seconds=seconds)
    assert summary.usage.sandbox_runs == 4 and summary.usage.sandbox_seconds_per_run > 0
