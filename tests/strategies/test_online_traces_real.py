"""Online trace control on the real SmolLM2-135M: deepconf and short-m stop traces, billed as
counted."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from testtime.backends.embedded import EmbeddedBackend
from testtime.strategies import make_strategy
from testtime.strategies.base import Context
from testtime.types import Problem

pytestmark = pytest.mark.model

PROBLEM = Problem(id="q", question="What is 17*23? Reason step by step, then reply "
                                   "'The answer is N.'")


async def test_online_deepconf_stops_traces_and_bills_what_the_engine_counted(
        smollm: EmbeddedBackend, engine_count: Callable[[EmbeddedBackend], float]) -> None:
    before = engine_count(smollm)
    ctx = Context(backend=smollm, seed=2)
    spec = ("deepconf:n=8,warmup=4,batch=4,eta=10,window=8,consensus=1.0,max_tokens=96,"
            "temperature=1.0")
    result = await make_strategy(spec).run(PROBLEM, ctx)
    u = result.usage
    stopped = [c for c in result.candidates if c.completion.finish_reason == "stopped"]
    assert stopped and u.stopped_traces == len(stopped) == result.extra["stopped"]
    assert all(c.completion.generated_tokens < 96 for c in stopped)  # before their end
    # Usage is the engine's per-trace count (timings.predicted_n), stopped traces included; a
    # stopped trace's candidate may miss the one token the engine decoded as the stop arrived
    seen = sum(c.completion.generated_tokens for c in result.candidates)
    assert seen <= u.generated_tokens <= seen + u.stopped_traces
    seen_stopped = sum(c.completion.generated_tokens for c in stopped)
    assert seen_stopped <= u.stopped_tokens <= seen_stopped + u.stopped_traces
    engine = engine_count(smollm) - before
    # llama.cpp's own counter: what was reported, plus at most the one token each stopped
    # trace decoded while its stop reached the engine.
    assert u.generated_tokens <= engine <= u.generated_tokens + u.stopped_traces
    assert u.calls == 8


async def test_certainty_probe_probes_a_live_trace_and_bills_every_probe(
        smollm: EmbeddedBackend, engine_count: Callable[[EmbeddedBackend], float]) -> None:
    before = engine_count(smollm)
    ctx = Context(backend=smollm, seed=4)
    spec = "certainty-probe:n=2,probe_every=12,k=2,max_tokens=96,temperature=0.7"
    result = await make_strategy(spec).run(PROBLEM, ctx)
    u = result.usage
    probes = result.extra["probes"]
    assert probes >= 1 and u.calls == 2 + probes
    traced = sum(c.completion.generated_tokens for c in result.candidates)
    assert u.generated_tokens >= traced + probes  # every probe wrote at least one token
    assert u.stopped_traces == result.extra["stopped"]
    engine = engine_count(smollm) - before
    assert u.generated_tokens <= engine <= u.generated_tokens + u.stopped_traces


async def test_short_m_stops_the_losers_when_the_first_finishes(
        smollm: EmbeddedBackend, engine_count: Callable[[EmbeddedBackend], float]) -> None:
    before = engine_count(smollm)
    ctx = Context(backend=smollm, seed=5)
    result = await make_strategy("short-m:n=4,m=1,max_tokens=160,temperature=1.0").run(
        PROBLEM, ctx)
    u = result.usage
    done = [c for c in result.candidates if c.completion.finish_reason != "stopped"]
    stopped = [c for c in result.candidates if c.completion.finish_reason == "stopped"]
    assert result.extra["finished"] == 1 and u.stopped_traces == len(stopped) >= 1
    first = min(c.completion.generated_tokens for c in done)
    # traces decode in lockstep: a loser was stopped within a few tokens of the winner's end
    assert all(c.completion.generated_tokens <= first + 4 for c in stopped)
    engine = engine_count(smollm) - before
    assert u.generated_tokens <= engine <= u.generated_tokens + u.stopped_traces
