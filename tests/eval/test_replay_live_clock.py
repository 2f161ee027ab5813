"""A replayed trace is billed what a live engine would generate while its probes run."""

from __future__ import annotations

from testtime.backends.scripted import ScriptedBackend
from testtime.eval.replay import ReplayBackend
from testtime.strategies import make_strategy
from testtime.strategies.base import Context
from testtime.types import GenerationRequest, Problem

PROBLEM = Problem(id="p", question="What is 6*7?", reference="42")


async def pool(words: int) -> list:  # type: ignore[type-arg]
    recorder = ScriptedBackend(responder=lambda p, i, r: "step " * words + "The answer is 42.")
    gen = await recorder.generate(GenerationRequest(prompt=PROBLEM.prompt(), logprobs=True,
                                                    top_logprobs=2))
    return list(gen.completions)


def live(probe: str) -> ScriptedBackend:
    return ScriptedBackend(responder=lambda p, i, r: probe)


async def test_a_stopped_trace_pays_for_the_tokens_generated_while_it_was_probed() -> None:
    # probes at 5, 10 and 15 read tokens, each 8 decoding steps long: a live engine is at
    # 5+8=13 when the first returns, launches the second at 13 (the reader is already past
    # 10) and the third at 21, and has generated 29 tokens when the third says stop.
    replay = ReplayBackend(await pool(60), live=live("a b c d e f g 42}"))
    spec = "certainty-probe:probe_every=5,k=3"
    result = await make_strategy(spec).run(PROBLEM, Context(backend=replay))
    u = result.usage
    assert result.extra["probes"] == 3
    assert (u.stopped_traces, u.stopped_tokens) == (1, 29)
    assert u.generated_tokens == 29 + 3 * 8


async def test_short_probes_leave_the_clock_behind_the_reader() -> None:
    replay = ReplayBackend(await pool(60), live=live("42}"))
    result = await make_strategy("certainty-probe:probe_every=5,k=3").run(
        PROBLEM, Context(backend=replay))
    assert (result.usage.stopped_tokens, result.usage.generated_tokens) == (16, 16 + 3)


async def test_the_clock_never_bills_past_the_trace_end() -> None:
    replay = ReplayBackend(await pool(14), live=live(" ".join(["x"] * 40) + " 42}"))
    result = await make_strategy("certainty-probe:probe_every=5,k=2,probe_tokens=64").run(
        PROBLEM, Context(backend=replay))
    assert result.usage.stopped_tokens <= 18
