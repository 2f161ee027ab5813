"""Tool-integrated traces on the scripted backend: pause at a code block, run it, continue."""

from __future__ import annotations

import pytest

from testtime.backends.scripted import ScriptedBackend
from testtime.code.sandbox import available
from testtime.eval.runner import solve
from testtime.registry import ClientRules, SpecError, build
from testtime.strategies import ToolIntegrated, make_strategy, strategies
from testtime.strategies.tool_integrated import PAUSE, pending_code
from testtime.types import GenerationRequest, Problem, Prompt, Result

NEEDS_BOX = pytest.mark.skipif(not (available("namespace") or available("userns")),
                               reason="needs a real sandbox (root or user namespaces)")
PROBLEM = Problem(id="p", question="Ann has 6 bags of 7 apples. How many apples?",
                  reference="42")


async def run(spec: str | ToolIntegrated, backend: ScriptedBackend) -> Result:
    strategy = make_strategy(spec) if isinstance(spec, str) else spec
    return await solve(PROBLEM, strategy, backend, spec=str(spec))


def test_pending_code_is_the_block_a_segment_ends_on() -> None:
    assert pending_code("Compute.\n```python\nprint(6 * 7)") == "print(6 * 7)\n"
    assert pending_code("Compute.\n```py\nx = 2\nprint(x)\n```\n  ") == "x = 2\nprint(x)\n"
    assert pending_code("```python\nprint(1)\n```\nSo it is 1.") is None
    assert pending_code("No code here. The answer is 4.") is None
    assert pending_code("```python\n```") is None
    assert pending_code("```python\nprint(1)\n```\ntext\n```python\nprint(2)") == "print(2)\n"


@NEEDS_BOX
async def test_a_trace_pauses_runs_its_code_and_continues_with_the_output() -> None:
    def respond(prompt: Prompt, i: int, req: GenerationRequest) -> str:
        if "```output" in prompt.prefix:
            return "So she has 42 apples. The answer is 42."
        return ("Multiply bags by apples per bag.\n```python\nprint(6 * 7)\n```\n"
                "```output\n41\n```\nThe answer is 41.")

    backend = ScriptedBackend(responder=respond)
    result = await run("tool-integrated:n=1", backend)
    assert result.answer == "42"
    [trace] = result.candidates
    assert "print(6 * 7)\n```\n```output\n42\n```\nSo she has 42 apples." in trace.text
    assert "41" not in trace.text
    first, second = backend.requests
    assert first.stop == PAUSE and second.prompt.prefix.endswith("```output\n42\n```\n")
    assert second.max_tokens < first.max_tokens
    assert result.usage.calls == 2 and result.usage.sandbox_runs == 1


@NEEDS_BOX
async def test_calls_per_trace_are_capped_then_the_trace_runs_to_its_end() -> None:
    backend = ScriptedBackend.cycle(["```python\nprint(7)\n```\nThe answer is 7."])
    result = await run("tool-integrated:n=2,max_calls=2", backend)
    assert result.answer == "7"
    assert result.usage.sandbox_runs == 4 and result.usage.calls == 6
    assert [r.stop for r in backend.requests].count(()) == 2
    for trace in result.candidates:
        assert trace.text.count("```output\n7\n```") == 2
    none = await run("tool-integrated:n=1,max_calls=0", ScriptedBackend.cycle(
        ["```python\nprint(7)\n```\nThe answer is 7."]))
    assert none.usage.sandbox_runs == 0 and none.usage.calls == 1


@NEEDS_BOX
async def test_a_looping_block_is_output_in_the_trace_not_a_failed_request() -> None:
    def respond(prompt: Prompt, i: int, req: GenerationRequest) -> str:
        if "did not finish" in prompt.prefix:
            return "That timed out; 6 times 7 is 42. The answer is 42."
        return "```python\nwhile True:\n    pass\n```\n"

    strategy = ToolIntegrated(n=1, timeout=3, cpu=1)
    result = await run(strategy, ScriptedBackend(responder=respond))
    assert result.answer == "42"
    assert "```output\nthe program did not finish (" in result.candidates[0].text


def test_sandbox_limits_are_operator_only_and_calls_are_bounded() -> None:
    rules = ClientRules(allowed={"strategy": None, "verifier": None})
    build(strategies, "tool-integrated:n=2,max_calls=2", client=rules)
    with pytest.raises(SpecError, match="operator"):
        build(strategies, "tool-integrated:timeout=60", client=rules)
    with pytest.raises(SpecError):
        make_strategy("tool-integrated:max_calls=17")
