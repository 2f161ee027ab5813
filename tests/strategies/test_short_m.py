"""short-m@k on the scripted backend: the first m traces to finish vote, the rest are stopped."""

from __future__ import annotations

import pytest

from testtime.backends.scripted import ScriptedBackend
from testtime.eval.replay import ReplayBackend
from testtime.registry import SpecError
from testtime.strategies import make_strategy
from testtime.strategies.base import Context
from testtime.types import GenerationRequest, Problem

PROBLEM = Problem(id="p", question="What is 6*7?")


def words(n: int, answer: str) -> str:
    return "step " * n + f"The answer is {answer}."  # n + 4 tokens


async def test_the_first_to_finish_answers_and_the_others_stop_on_its_token() -> None:
    backend = ScriptedBackend.cycle([words(30, "5"), words(2, "4"), words(10, "6")])
    result = await make_strategy("short-m:n=3,m=1").run(PROBLEM, Context(backend=backend))
    u = result.usage
    assert result.answer == "4" and result.extra["finished"] == 1
    assert (u.stopped_traces, result.extra["stopped"]) == (2, 2)
    # the winner's 6 tokens; in lockstep the trace before it had streamed its 7th token when
    # it saw the stop, the one after it its 6th
    assert u.stopped_tokens == 7 + 6 and u.generated_tokens == 6 + 7 + 6


async def test_the_m_finishers_vote_and_a_tie_goes_to_the_shortest() -> None:
    traces = [words(40, "9"), words(8, "6"), words(3, "8"), words(6, "6"), words(12, "7")]
    majority = await make_strategy("short-m:n=5,m=3").run(
        PROBLEM, Context(backend=ScriptedBackend.cycle(traces)))
    assert majority.answer == "6" and majority.votes == {"6": 2.0, "8": 1.0}
    assert majority.usage.stopped_traces == 2  # the 40- and 12-step traces
    tie = await make_strategy("short-m:n=5,m=2").run(
        PROBLEM, Context(backend=ScriptedBackend.cycle(traces)))
    assert tie.answer == "8" and tie.votes == {"6": 1.0, "8": 1.0}  # a plain vote says 6


async def test_traces_without_an_answer_do_not_end_the_race() -> None:
    backend = ScriptedBackend.cycle(["no idea", words(6, "3"), words(20, "8")])
    result = await make_strategy("short-m:n=3,m=1").run(PROBLEM, Context(backend=backend))
    assert result.answer == "3" and result.usage.stopped_traces == 1


async def test_short_m_decides_on_a_replayed_pool_as_it_did_live() -> None:
    traces = [words(k, str(k % 3)) for k in (25, 7, 14, 3, 30, 9)]
    live = await make_strategy("short-m:n=6,m=3").run(
        PROBLEM, Context(backend=ScriptedBackend.cycle(traces), seed=2))
    whole = await ScriptedBackend.cycle(traces).generate(
        GenerationRequest(prompt=PROBLEM.prompt(), n=6, logprobs=True))
    replayed = await make_strategy("short-m:n=6,m=3").run(
        PROBLEM, Context(backend=ReplayBackend(list(whole.completions)), seed=2))
    assert live.usage.stopped_traces == 3
    assert replayed.answer == live.answer and replayed.votes == live.votes
    for field in ("generated_tokens", "stopped_traces", "stopped_tokens"):
        assert getattr(replayed.usage, field) == getattr(live.usage, field), field


def test_m_may_not_exceed_n() -> None:
    with pytest.raises(SpecError):
        make_strategy("short-m:n=2,m=3")
