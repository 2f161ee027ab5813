"""Thinking with tools on the real Qwen2.5-Coder-0.5B: answers and traces hold the sandbox's
output, and its runs are billed; DeepConf over tool-integrated traces pauses, runs the code,
continues, and its confidence covers the tokens of every step."""

from __future__ import annotations

import pytest

from testtime.backends.embedded import EmbeddedBackend
from testtime.code.extract import extract_code
from testtime.code.programs import run_program
from testtime.code.sandbox import available
from testtime.confidence import token_scores, trace_confidence
from testtime.strategies import CrossCheck, Program, ToolIntegrated, make_strategy
from testtime.strategies.base import open_context
from testtime.strategies.program import program_answer
from testtime.strategies.tool_integrated import pending_code
from testtime.tasks.base import MATH_INSTRUCTION, MATH_SYSTEM
from testtime.types import Problem

pytestmark = [pytest.mark.model, pytest.mark.slow,
              pytest.mark.skipif(not (available("namespace") or available("userns")),
                                 reason="needs a real sandbox (root or user namespaces)")]

PROBLEM = Problem(id="pencils", reference="29", question=(
    "Pencils cost 3 dollars each. Maya buys 7 pencils and pays with a 50 dollar bill. "
    "How much change does she get?"))


async def test_a_program_samples_answer_is_what_the_sandbox_printed(
        qwen05: EmbeddedBackend) -> None:
    strategy = Program(n=2, temperature=0.0, max_tokens=160)
    result = await strategy.run(PROBLEM, open_context(strategy, qwen05, seed=1))
    assert result.usage.sandbox_runs == 2 and result.usage.sandbox_seconds > 0
    assert result.usage.calls == 1 and result.usage.generated_tokens > 0
    for candidate in result.candidates:
        reply = candidate.completion.text
        shown = candidate.text.split("```output\n")[-1].removesuffix("\n```")
        again = run_program(extract_code(reply))
        assert candidate.answer == program_answer(again)
        assert again.result is None or again.result in shown
    answered = [c for c in result.candidates if c.answer is not None]
    assert answered, [c.text for c in result.candidates]
    assert result.answer == answered[0].answer


async def test_cross_check_votes_across_traces_and_programs(qwen05: EmbeddedBackend) -> None:
    problem = PROBLEM.model_copy(update={"system": MATH_SYSTEM, "instruction": MATH_INSTRUCTION})
    strategy = CrossCheck(n=2, programs=2, temperature=0.7, max_tokens=200)
    result = await strategy.run(problem, open_context(strategy, qwen05, seed=2))
    assert result.usage.calls == 2 and result.usage.sandbox_runs == 2
    assert result.extra["kinds"] == ["trace", "trace", "program", "program"]
    for candidate in result.candidates[2:]:
        assert "```output\n" in candidate.text
        assert candidate.answer == program_answer(run_program(extract_code(
            candidate.completion.text)))
    for answer, counts in result.extra["agreement"].items():
        traces, programs = counts["traces"], counts["programs"]
        assert result.votes[answer] == traces + programs + min(traces, programs)
    assert result.answer == (next(iter(result.votes)) if result.votes else None)


async def test_a_tool_integrated_trace_pauses_runs_and_continues(
        qwen05: EmbeddedBackend) -> None:
    strategy = ToolIntegrated(n=1, temperature=0.0, max_calls=2, max_tokens=300)
    result = await strategy.run(PROBLEM, open_context(strategy, qwen05, seed=3))
    [trace] = result.candidates
    runs = result.usage.sandbox_runs
    assert 1 <= runs <= 2 and result.usage.sandbox_seconds > 0, trace.text
    assert result.usage.calls == runs + 1
    assert trace.text.count("```output\n") == runs
    code = pending_code(trace.text.split("```output\n")[0].rstrip().removesuffix("```"))
    assert code is not None
    printed = run_program(code).feedback()
    assert f"```output\n{printed}\n```\n" in trace.text
    continued = trace.text.split(f"```output\n{printed}\n```\n", 1)[1]
    assert continued.strip(), trace.text


async def test_deepconf_weighs_a_real_tool_trace_over_all_its_steps(
        qwen05: EmbeddedBackend) -> None:
    spec = ("deepconf:mode=offline,n=1,eta=100,top_logprobs=3,temperature=0,max_tokens=300,"
            "samples=[tool-integrated:max_calls=2]")
    strategy = make_strategy(spec)
    result = await strategy.run(PROBLEM, open_context(strategy, qwen05, seed=3))
    [trace] = result.candidates
    u = result.usage
    runs = u.sandbox_runs
    assert 1 <= runs <= 2 and u.calls == runs + 1, trace.text
    assert trace.text.count("```output\n") == runs
    assert trace.text.rsplit("```output\n", 1)[1].split("```", 1)[1].strip(), \
        "the trace continues after the output"
    comp = trace.completion
    assert comp.logprobs is not None and comp.top_logprobs is not None
    assert comp.generated_tokens == u.generated_tokens
    # every step's tokens are there, the first's and the last's (the engine gives no logprobs
    # for the tokens of a stop string a step paused on); the code output is not
    said = "".join(comp.tokens or ())
    first = trace.text.split("```python", 1)[0].strip()
    last = trace.text.rsplit("```output\n", 1)[1].split("```\n", 1)[1].strip()
    assert first[:20] in said and last[-20:] in said, (said, trace.text)
    assert comp.generated_tokens - 8 * runs <= len(comp.logprobs) <= comp.generated_tokens
    if trace.answer is not None:
        conf = trace_confidence(token_scores(comp.logprobs, comp.top_logprobs),
                                "lowest-window", 32)
        assert result.votes == {trace.answer: pytest.approx(conf)}
