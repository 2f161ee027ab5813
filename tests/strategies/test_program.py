"""Programs as thoughts on the scripted backend: answers come from the sandbox's output."""

from __future__ import annotations

import pytest

from testtime.backends.scripted import ScriptedBackend
from testtime.code.sandbox import available
from testtime.eval.runner import solve
from testtime.registry import ClientRules, SpecError, build
from testtime.strategies import Program, make_strategy, strategies
from testtime.strategies.program import program_prompt
from testtime.types import GenerationRequest, Prompt, Result

pytestmark = pytest.mark.skipif(not (available("namespace") or available("userns")),
                                reason="needs a real sandbox (root or user namespaces)")
PROBLEM_Q = "Ann has 6 bags of 7 apples. How many apples does she have?"


def fenced(code: str) -> str:
    return f"Here is the program:\n```python\n{code}\n```"


async def run(spec: str | Program, backend: ScriptedBackend) -> Result:
    from testtime.types import Problem

    strategy = make_strategy(spec) if isinstance(spec, str) else spec
    return await solve(Problem(id="apples", question=PROBLEM_Q, reference="42"), strategy,
                       backend, spec=str(spec))


async def test_answer_is_what_the_program_printed_and_the_sandbox_is_billed() -> None:
    backend = ScriptedBackend.cycle([fenced("bags = 6\nper_bag = 7\nanswer = bags * per_bag\n"
                                            "print(answer)")])
    result = await run("program", backend)
    assert result.answer == "42"
    [candidate] = result.candidates
    assert "42" not in candidate.completion.text
    assert "```output\n42\n```" in candidate.text
    assert result.usage.sandbox_runs == 1 and result.usage.sandbox_seconds > 0
    assert "sandbox" in result.usage.counted_by
    prompt = backend.requests[0].prompt
    assert prompt.messages[-1].content == PROBLEM_Q
    assert "print(answer)" in prompt.messages[2].content


async def test_program_majority_counts_failed_programs_as_unanswered() -> None:
    backend = ScriptedBackend.cycle([
        fenced("print(6 * 7)"), fenced("answer = 6 + 7\nprint(answer)"),
        fenced("x = 6 * 7\nprint(x / 0)"), fenced("answer = 42.0000000001\nprint(answer)"),
        fenced("answer = 13"), fenced("print('The answer is', 6 * 7)")])
    result = await run("program:n=6", backend)
    assert result.answer == "42"
    assert result.votes == {"42": 3.0, "13": 2.0}
    answers = [c.answer for c in result.candidates]
    assert answers.count(None) == 1
    failed = next(c for c in result.candidates if c.answer is None)
    assert "ZeroDivisionError" in failed.text
    assert result.usage.sandbox_runs == 6 and result.usage.calls == 1


async def test_loops_floods_and_crashes_are_failed_samples_not_failed_requests() -> None:
    hostile = ["while True:\n    pass", "while True:\n    print('spam' * 100)",
               "print('x' * 100000)", "import os\nprint(42)\nos._exit(0)",
               "import signal, os\nos.kill(os.getpid(), signal.SIGSEGV)",
               "x = 'y' * 10**10", "import socket\nsocket.create_connection(('1.1.1.1', 80))"]
    backend = ScriptedBackend.cycle([fenced(c) for c in hostile] + [fenced("print(42)")])
    strategy = Program(n=len(hostile) + 1, timeout=3, cpu=1, memory_mb=256, parallel=4)
    result = await run(strategy, backend)
    assert result.answer == "42"
    assert [c.answer for c in result.candidates] == [None] * len(hostile) + ["42"]
    assert result.usage.sandbox_runs == len(hostile) + 1


async def test_repair_shows_the_traceback_once_and_runs_the_fix() -> None:
    seen: list[Prompt] = []

    def respond(prompt: Prompt, i: int, req: GenerationRequest) -> str:
        seen.append(prompt)
        if "Running that program gave" in prompt.messages[-1].content:
            return fenced("bags = 6\nanswer = bags * 7\nprint(answer)")
        return fenced("bags = 6\nanswer = bags * apples_per_bag\nprint(answer)")

    result = await run("program:repair=true", ScriptedBackend(responder=respond))
    assert result.answer == "42"
    assert len(seen) == 2
    assert "NameError: name 'apples_per_bag' is not defined" in seen[1].messages[-1].content
    assert seen[1].messages[-2].role == "assistant"
    assert result.usage.sandbox_runs == 2 and result.usage.calls == 2
    assert "NameError" in result.candidates[0].text
    unrepaired = await run("program", ScriptedBackend(responder=respond))
    assert unrepaired.answer is None and unrepaired.usage.sandbox_runs == 1


async def test_select_best_scores_program_candidates_with_a_verifier() -> None:
    backend = ScriptedBackend.cycle([fenced("print(41)"), fenced("print(42)")])
    result = await run("program:n=2,select=best,verifier=reference", backend)
    assert result.answer == "42"
    assert [c.score is not None for c in result.candidates] == [True, True]
    with pytest.raises(SpecError, match="select=best or weighted"):
        make_strategy("program:n=2,verifier=reference")


def test_sandbox_limits_are_operator_only() -> None:
    rules = ClientRules(allowed={"strategy": None, "verifier": None})
    build(strategies, "program:n=4,repair=true,select=majority", client=rules)
    for option in ("timeout=100", "cpu=50", "memory_mb=4096", "parallel=64",
                   "sandbox=namespace"):
        with pytest.raises(SpecError, match="operator"):
            build(strategies, f"program:{option}", client=rules)


def test_prompt_shows_worked_programs_and_no_question_code() -> None:
    prompt = program_prompt("What is 1 + 1?")
    roles = [m.role for m in prompt.messages]
    assert roles[0] == "system" and roles[-1] == "user" and roles.count("assistant") == 3
    assert all("answer =" in m.content for m in prompt.messages if m.role == "assistant")
