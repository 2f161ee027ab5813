"""The agent on the real Qwen2.5-Coder-0.5B: it calls the calculator and answers a word
problem; under a small budget it stops with the best answer so far. Usage equals the engine's
own count of generated tokens."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from testtime.backends.embedded import EmbeddedBackend
from testtime.budget import Budget
from testtime.strategies import make_strategy
from testtime.strategies.base import open_context
from testtime.types import Problem, Result

pytestmark = pytest.mark.model

CLIPS = Problem(id="clips", reference="72", question=(
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips "
    "in May. How many clips did Natalia sell altogether in April and May?"))


async def run(engine: EmbeddedBackend, budget: Budget | None,
              engine_count: Callable[[EmbeddedBackend], float]) -> Result:
    strategy = make_strategy("agent:tools=calculator,temperature=0,max_tokens=128")
    before = engine_count(engine)
    result = await strategy.run(CLIPS, open_context(strategy, engine, budget=budget, seed=0))
    u = result.usage
    assert u.generated_tokens <= engine_count(engine) - before <= u.generated_tokens + u.cut_calls
    return result


@pytest.mark.slow
async def test_the_agent_calls_the_calculator_and_answers(
        qwen05: EmbeddedBackend, engine_count: Callable[[EmbeddedBackend], float]) -> None:
    result = await run(qwen05, None, engine_count)
    [trajectory] = result.extra["trajectories"]
    first = trajectory["turns"][0]
    assert first["tool"] == "calculator" and first["ok"], trajectory
    assert trajectory["stopped"] == "answer"
    assert result.answer == "72"
    u = result.usage
    assert u.tool_runs >= 1 and u.calls == len(trajectory["turns"]) and not result.budget_exhausted
    assert u.cached_tokens > 0  # the second turn reuses the first one's prompt


@pytest.mark.slow
@pytest.mark.ci
async def test_at_a_small_budget_the_agent_answers_what_its_tool_computed(
        qwen05: EmbeddedBackend, engine_count: Callable[[EmbeddedBackend], float]) -> None:
    result = await run(qwen05, Budget(generated_tokens=32), engine_count)
    [trajectory] = result.extra["trajectories"]
    assert result.budget_exhausted and result.budget_limit == "generated_tokens"
    assert trajectory["stopped"] == "budget" and result.usage.generated_tokens <= 32
    assert trajectory["turns"][0]["tool"] == "calculator", trajectory
    assert result.usage.tool_runs == 1
    assert result.answer == trajectory["turns"][0]["output"] == "72"
