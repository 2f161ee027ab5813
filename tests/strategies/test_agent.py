"""The agent loop on the scripted backend: calls parsed and run, observations appended, the
budget shown every turn, stops at the budget with the best answer so far, votes."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator

import pytest

from testtime.backends.scripted import ScriptedBackend
from testtime.budget import Budget
from testtime.code.sandbox import available
from testtime.eval.runner import solve
from testtime.registry import ClientRules, SpecError, SpecForbidden, build
from testtime.strategies import make_strategy, strategies
from testtime.strategies.agent import CLOSE, read_call
from testtime.strategies.base import open_context
from testtime.tools import PythonSettings, PythonTool, register_tool, tools
from testtime.types import GenerationRequest, Problem, Prompt, Result

PROBLEM = Problem(id="p", question="Mia buys 14 pens at $3 and gets $5 off. What does she pay?",
                  reference="37")
NEEDS_BOX = pytest.mark.skipif(not (available("namespace") or available("userns")),
                               reason="needs a real sandbox (root or user namespaces)")


def call(name: str, **arguments: object) -> str:
    return f'<tool_call>{json.dumps({"name": name, "arguments": arguments})}</tool_call>'


def last(prompt: Prompt) -> str:
    return prompt.messages[-1].content


def budgets(prompt: Prompt) -> tuple[int, int]:
    """(tokens left, tool calls left) of the budget tracker ending the prompt."""
    match = re.search(r"<budget>tokens left: (\d+); tool calls left: (\d+)</budget>$",
                      last(prompt))
    assert match, last(prompt)
    return int(match[1]), int(match[2])


async def run(spec: str, backend: ScriptedBackend, budget: Budget | None = None) -> Result:
    return await solve(PROBLEM, make_strategy(spec), backend, spec=spec, budget=budget)


def test_read_call_reads_the_hermes_format() -> None:
    prose, got = read_call('I compute it.\n<tool_call>{"name": "calculator", "arguments": '
                           '{"expression": "1+1"}}')
    assert prose == "I compute it.\n" and got is not None
    assert (got.name, got.arguments, got.problem) == ("calculator", {"expression": "1+1"}, None)
    assert read_call("The answer is 4.") == ("The answer is 4.", None)
    _, bad = read_call("<tool_call>calculator(1+1)")
    assert bad is not None and bad.problem is not None and "not JSON" in bad.problem


def test_read_call_reads_a_call_whose_tag_the_engine_dropped() -> None:
    bare = '{"name": "calculator", "arguments": {"expression": "48 / 2"}}\n'
    prose, got = read_call(bare)
    assert prose == "" and got is not None and got.arguments == {"expression": "48 / 2"}
    assert got.written(prose) == (
        '<tool_call>\n{"name": "calculator", "arguments": {"expression": "48 / 2"}}\n'
        "</tool_call>")
    prose, fenced = read_call(f"Half of 48.\n```json\n{bare}```\n<tool_response>99")
    assert fenced == got and prose == "Half of 48.\n"
    assert fenced.written(prose).startswith("Half of 48.\n<tool_call>\n")
    assert read_call('The data is {"name": "x"} and 3.')[1] is None


async def test_a_call_is_run_and_its_result_is_the_next_observation() -> None:
    def respond(prompt: Prompt, i: int, req: GenerationRequest) -> str:
        if "<tool_response>\n37\n</tool_response>" in last(prompt):
            return "She pays $37. The answer is 37."
        return f"14 pens at $3, less $5.\n{call('calculator', expression='14 * 3 - 5')} tail"

    backend = ScriptedBackend(responder=respond)
    result = await run("agent:tools=calculator", backend)
    assert result.answer == "37" and not result.budget_exhausted
    first, second = backend.requests
    assert first.stop == (CLOSE,) and second.stop == (CLOSE,)
    assert second.prompt.messages[:-2] == first.prompt.messages  # history kept byte for byte
    assert second.prompt.messages[-2].role == "assistant"
    assert second.prompt.messages[-2].content.endswith(CLOSE)
    assert "tail" not in second.prompt.messages[-2].content
    assert last(second.prompt).startswith("<tool_response>\n37\n</tool_response>\n<budget>")
    u = result.usage
    assert (u.calls, u.tool_runs, u.sandbox_runs) == (2, 1, 0) and u.tool_seconds > 0
    assert "tools" in u.counted_by
    [trajectory] = result.extra["trajectories"]
    assert trajectory["stopped"] == "answer" and trajectory["tool_calls"] == 1
    assert trajectory["turns"][0]["tool"] == "calculator" and trajectory["turns"][0]["ok"]
    assert result.text is not None and "<tool_response>\n37\n</tool_response>" in result.text
    assert result.text.endswith("The answer is 37.")
    system = first.prompt.messages[0].content
    assert '"name": "calculator"' in system and '"name": "python"' not in system


async def test_the_budget_is_shown_every_turn_and_decreases() -> None:
    def respond(prompt: Prompt, i: int, req: GenerationRequest) -> str:
        asked = next(i for i, m in enumerate(prompt.messages) if PROBLEM.question in m.content)
        seen = sum("<tool_response>" in m.content for m in prompt.messages[asked:])
        if seen >= 3:
            return "The answer is 37."
        return f"Step {seen}. {call('calculator', expression=f'{seen} + 1')}"

    backend = ScriptedBackend(responder=respond)
    result = await run("agent:tools=calculator,max_tokens=200,max_tool_calls=5", backend)
    assert result.answer == "37"
    shown = [budgets(r.prompt) for r in backend.requests]
    assert len(shown) == 4
    assert shown[0] == (200, 5)
    tokens = [t for t, _ in shown]
    assert tokens == sorted(tokens, reverse=True) and len(set(tokens)) == 4
    assert [c for _, c in shown] == [5, 4, 3, 2]
    assert backend.requests[1].max_tokens == tokens[1] < backend.requests[0].max_tokens
    assert result.usage.generated_tokens == 200 - tokens[-1] + 4  # the final turn's words


async def test_the_budget_tracker_shows_the_runs_budget_when_it_is_tighter() -> None:
    backend = ScriptedBackend.cycle([call("calculator", expression="1 + 1")])
    result = await run("agent:tools=calculator,max_tokens=500", backend,
                       Budget(generated_tokens=30))
    assert budgets(backend.requests[0].prompt) == (30, 4)
    assert result.budget_exhausted


async def test_at_its_budget_the_agent_answers_the_last_number_a_tool_returned() -> None:
    counter = itertools.count(1)

    def respond(prompt: Prompt, i: int, req: GenerationRequest) -> str:
        return f"Next step. {call('calculator', expression=f'{next(counter)} * 10')}"

    backend = ScriptedBackend(responder=respond)
    result = await run("agent:tools=calculator,max_tool_calls=50,max_turns=50", backend,
                       Budget(generated_tokens=20))
    assert result.budget_exhausted and result.budget_limit == "generated_tokens"
    [trajectory] = result.extra["trajectories"]
    assert trajectory["stopped"] == "budget"
    assert result.usage.generated_tokens <= 20
    assert result.answer == str(10 * result.usage.tool_runs)
    assert result.usage.calls == len(backend.requests) == result.usage.tool_runs + 1


async def test_a_stated_answer_beats_a_tool_result_and_turns_are_capped() -> None:
    backend = ScriptedBackend.cycle([
        f"I think the answer is 36. Let me check. {call('calculator', expression='14*3-5')}"])
    result = await run("agent:tools=calculator,max_turns=2", backend)
    [trajectory] = result.extra["trajectories"]
    assert trajectory["stopped"] == "max_turns" and len(backend.requests) == 2
    assert result.answer == "36" and result.usage.tool_runs == 2
    assert not result.budget_exhausted


async def test_tool_calls_beyond_the_cap_are_refused_and_not_run() -> None:
    def respond(prompt: Prompt, i: int, req: GenerationRequest) -> str:
        if "no tool calls are left" in last(prompt):
            return "The answer is 2."
        return call("calculator", expression="1 + 1")

    backend = ScriptedBackend(responder=respond)
    result = await run("agent:tools=calculator,max_tool_calls=1", backend)
    assert result.answer == "2" and result.usage.tool_runs == 1
    assert budgets(backend.requests[1].prompt)[1] == 0
    assert len(backend.requests) == 3


@pytest.mark.parametrize(("turn", "shown", "runs"), [
    (call("calculator", expr="1+1"),
     "error: invalid arguments for calculator: expression: Field required; expr: Extra inputs "
     "are not permitted", 1),
    (call("calculator", expression="__import__('os').system('id')"),
     "error: only arithmetic is allowed", 1),
    (call("search", query="pens"), "error: there is no tool 'search'; tools: calculator", 0),
    (call("python", code="print(1)"), "error: there is no tool 'python'; tools: calculator", 0),
    ("<tool_call>calculator(1 + 1)</tool_call>", "error: the tool call is not JSON", 0),
])
async def test_bad_calls_are_errors_the_model_reads(turn: str, shown: str, runs: int) -> None:
    def respond(prompt: Prompt, i: int, req: GenerationRequest) -> str:
        return "The answer is 37." if "error:" in last(prompt) else turn

    backend = ScriptedBackend(responder=respond)
    result = await run("agent:tools=calculator", backend)
    assert result.answer == "37"
    assert last(backend.requests[1].prompt).startswith(f"<tool_response>\n{shown}")
    assert result.usage.tool_runs == runs


@pytest.fixture
def failing_tool() -> Iterator[str]:
    @register_tool
    def price(item: str) -> float:
        """The price of an item."""
        if item != "pen":
            raise LookupError(f"no price for {item}")
        return 3.0

    yield "price"
    tools.remove("price")


async def test_a_tools_exception_is_an_observation_not_a_failed_request(
        failing_tool: str) -> None:
    def respond(prompt: Prompt, i: int, req: GenerationRequest) -> str:
        if "raised" in last(prompt):
            return call("price", item="pen")
        if "<tool_response>\n3.0" in last(prompt):
            return "So 14 * 3 - 5 = 37. The answer is 37."
        return call("price", item="gold pen")

    backend = ScriptedBackend(responder=respond)
    result = await run(f"agent:tools={failing_tool}", backend)
    assert result.answer == "37" and result.usage.tool_runs == 2
    assert ("error: price raised LookupError: no price for gold pen"
            in last(backend.requests[1].prompt))


async def test_parallel_trajectories_are_voted_on_by_their_answers() -> None:
    first_turns = itertools.cycle(["2 + 3", "2 + 3", "2 + 4"])

    def respond(prompt: Prompt, i: int, req: GenerationRequest) -> str:
        got = re.search(r"<tool_response>\n(\d+)\n</tool_response>\n<budget>[^<]*</budget>$",
                        last(prompt))
        if got and len(prompt.messages) > 7:
            return f"The answer is {got[1]}."
        return call("calculator", expression=next(first_turns))

    backend = ScriptedBackend(responder=respond)
    result = await run("agent:n=3,tools=calculator", backend)
    assert result.answer == "5" and result.votes == {"5": 2.0, "6": 1.0}
    assert len(result.candidates) == 3 and result.usage.tool_runs == 3
    assert result.extra["aggregation"] == "majority"


async def test_select_best_takes_the_trajectory_the_verifier_scores_highest() -> None:
    first_turns = itertools.cycle(["2 + 3", "2 + 3", "2 + 4"])

    def respond(prompt: Prompt, i: int, req: GenerationRequest) -> str:
        got = re.search(r"<tool_response>\n(\d+)\n</tool_response>\n<budget>[^<]*</budget>$",
                        last(prompt))
        if got and len(prompt.messages) > 7:
            return f"Sure: the answer is {got[1]}."
        return call("calculator", expression=next(first_turns))

    backend = ScriptedBackend(responder=respond,
                              logprob=lambda text: -0.01 if "is 6" in text else -2.0)
    result = await run("agent:n=3,tools=calculator,select=best", backend)
    assert result.answer == "6" and result.extra["chosen"] == 2
    assert all(c.score is not None for c in result.candidates)
    with pytest.raises(SpecError, match="only with select=best"):
        make_strategy("agent:verifier=confidence")


async def test_named_tools_must_be_offered_by_the_run() -> None:
    backend = ScriptedBackend.cycle(["The answer is 1."])
    with pytest.raises(SpecError, match=r"tool\(s\) nope are not offered here"):
        await run("agent:tools=calculator+nope", backend)
    with pytest.raises(SpecError, match="identifiers joined by"):
        make_strategy("agent:tools=[calculator python]")
    strategy = make_strategy("agent:tools=calculator")
    with pytest.raises(SpecError, match="not offered here; tools: python"):
        open_context(strategy, backend, tools={"python": tools.get("python")})
    result = await strategy.run(PROBLEM, open_context(strategy, backend))
    assert result.answer == "1" and result.usage.tool_runs == 0


def test_a_client_may_name_tools_and_set_scalars_only() -> None:
    rules = ClientRules(allowed={"strategy": ["agent"], "verifier": ["confidence"]})
    built = build(strategies, "agent:tools=calculator,n=2,max_turns=3", client=rules)
    assert built.wants_tools() == ("calculator",)
    assert strategies.get("agent").runs_code
    with pytest.raises(SpecForbidden):
        build(strategies, "agent:tools=calculator",
              client=ClientRules(allowed={"strategy": ["single"]}))


@NEEDS_BOX
async def test_the_python_tool_runs_in_the_sandbox_and_a_loop_is_a_failed_call() -> None:
    def respond(prompt: Prompt, i: int, req: GenerationRequest) -> str:
        if "<tool_response>\n42" in last(prompt):
            return "The answer is 42."
        if "timeout" in last(prompt) or "did not finish" in last(prompt):
            return call("python", code="print(6 * 7)")
        return call("python", code="while True:\n    pass")

    backend = ScriptedBackend(responder=respond)
    strategy = make_strategy("agent:tools=python")
    python = PythonTool(PythonSettings(timeout=1, cpu=1))
    ctx = open_context(strategy, backend, tools={"python": python})
    result = await strategy.run(PROBLEM, ctx)
    assert result.answer == "42"
    u = result.usage
    assert (u.tool_runs, u.sandbox_runs) == (2, 2) and u.tool_seconds >= 1.0
    looped = result.extra["trajectories"][0]["turns"][0]
    assert looped["tool"] == "python" and not looped["ok"]


async def test_a_trajectory_that_spends_its_own_tokens_stops_without_exhausting_the_budget(
        ) -> None:
    backend = ScriptedBackend.cycle([f"Adding. {call('calculator', expression='3 + 4')}"])
    result = await run("agent:tools=calculator,max_tokens=12,max_turns=10", backend)
    [trajectory] = result.extra["trajectories"]
    assert trajectory["stopped"] == "tokens" and trajectory["tokens"] == 12
    assert not result.budget_exhausted and result.answer == "7"
