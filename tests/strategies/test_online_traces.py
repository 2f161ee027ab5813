"""Online trace control on the scripted backend: deepconf and certainty-probe stop traces.

Scripted tokens are words; ``token_tops`` scripts each word's top logprobs, so a trace's token
confidence (-mean top-k logprob) is known word by word.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from testtime.backends.base import BackendError
from testtime.backends.scripted import ScriptedBackend
from testtime.confidence import (
    first_below,
    token_confidence,
    token_entropy,
    token_scores,
    trace_confidence,
)
from testtime.eval.replay import ReplayBackend
from testtime.registry import SpecError
from testtime.strategies import make_strategy
from testtime.strategies.base import Context
from testtime.types import GenerationRequest, Problem, Prompt

PROBLEM = Problem(id="p", question="What is 6*7?")
SURE = {"a": -0.05, "b": -3.0}      # confidence 1.525
UNSURE = {"a": -1.0, "b": -1.2}     # confidence 1.1


def words(n: int, answer: str = "42") -> str:
    return "step " * n + f"The answer is {answer}."


def drops_after(k: int):
    """Top logprobs of a trace that is sure for ``k`` words, then unsure."""
    return lambda text, i: SURE if i < k else UNSURE


async def test_a_trace_whose_confidence_drops_is_stopped_at_the_right_token() -> None:
    backend = ScriptedBackend(responder=lambda p, i, r: words(40), token_tops=drops_after(10))
    ctx = Context(backend=backend)
    deepconf = make_strategy("deepconf:window=4")
    traces = await ctx.traces(PROBLEM, 1, watch=deepconf.watcher(1.3), top_logprobs=2)
    scores = [token_confidence(SURE)] * 10 + [token_confidence(UNSURE)] * 34
    expected = first_below(scores, 4, 1.3)
    assert expected == 13  # windows: 10 sure; then 3 of 4 sure (1.419), 2 of 4 (1.3125), 1 of 4
    done = traces[0].candidate
    assert done is not None and done.completion.finish_reason == "stopped"
    assert traces[0].n_tokens == done.completion.generated_tokens == expected
    assert done.text == words(40)[:len("step ") * 13 - 1]
    u = ctx.ledger.close()
    assert (u.generated_tokens, u.stopped_traces, u.stopped_tokens, u.cut_calls) == (13, 1, 13, 1)


async def test_stopping_one_trace_leaves_the_others_running() -> None:
    backend = ScriptedBackend.cycle([words(20, str(k)) for k in range(3)],
                                    token_tops=lambda text, i: UNSURE if "1." in text and i > 3
                                    else SURE)
    ctx = Context(backend=backend)
    traces = await ctx.traces(PROBLEM, 3, watch=make_strategy("deepconf:window=2").watcher(1.3),
                              top_logprobs=2)
    reasons = [t.candidate.completion.finish_reason for t in traces if t.candidate]
    assert reasons == ["stop", "stopped", "stop"]
    u = ctx.ledger.close()
    assert u.stopped_traces == 1 and u.stopped_tokens == 6  # window 2 full of unsure at word 6
    assert u.generated_tokens == 2 * 24 + 6


async def test_online_deepconf_bills_stopped_traces_and_votes_without_them() -> None:
    # warm-up: four sure traces answering 42; later traces answering 7 lose confidence.
    def respond(p: Prompt, i: int, r: GenerationRequest) -> str:
        return words(20, "42") if r.seed is not None and r.seed % 3 != 0 else words(20, "7")

    def tops(text: str, i: int) -> dict[str, float]:
        return UNSURE if "7." in text and i >= 2 else SURE

    backend = ScriptedBackend(responder=respond, token_tops=tops)
    ctx = Context(backend=backend, seed=5)
    spec = "deepconf:n=12,warmup=4,batch=4,window=2,eta=90,consensus=1.0"
    result = await make_strategy(spec).run(PROBLEM, ctx)
    u = result.usage
    stopped = [c for c in result.candidates if c.completion.finish_reason == "stopped"]
    finished = [c for c in result.candidates if c.completion.finish_reason != "stopped"]
    assert stopped and u.stopped_traces == len(stopped) == result.extra["stopped"]
    assert all(c.completion.generated_tokens == 4 for c in stopped)
    assert u.stopped_tokens == 4 * len(stopped)
    assert u.generated_tokens == sum(c.completion.generated_tokens for c in finished) \
        + u.stopped_tokens
    assert result.answer == "42" and "7" not in result.votes


async def test_warmup_threshold_is_the_configured_percentile() -> None:
    levels = [-0.1, -0.4, -0.7, -1.0, -1.3, -1.6, -1.9, -2.2]

    def tops(text: str, i: int) -> dict[str, float]:
        lp = levels[int(text.split("is ")[1].rstrip("."))]
        return {"a": lp, "b": lp - 1.0}

    backend = ScriptedBackend.cycle([words(6, str(k)) for k in range(8)], token_tops=tops)
    ctx = Context(backend=backend)
    spec = "deepconf:n=8,warmup=8,eta=30,measure=mean"
    result = await make_strategy(spec).run(PROBLEM, ctx)
    confs = [-(lp + lp - 1.0) / 2 for lp in levels]
    assert result.extra["threshold"] == pytest.approx(np.percentile(confs, 70), abs=1e-4)


async def test_offline_deepconf_keeps_the_top_eta_percent_and_weighs_by_confidence() -> None:
    # three unsure traces say 7, one sure trace says 42: the plain majority is 7.
    texts = [words(5, "7"), words(5, "7"), words(5, "42"), words(5, "7")]
    tops = lambda text, i: SURE if "42" in text else UNSURE  # noqa: E731
    backend = ScriptedBackend.cycle(texts, token_tops=tops)
    result = await make_strategy("deepconf:mode=offline,n=4,eta=25").run(
        PROBLEM, Context(backend=backend))
    assert result.answer == "42" and result.votes == {"42": pytest.approx(1.525)}
    backend = ScriptedBackend.cycle(texts, token_tops=tops)
    result = await make_strategy("deepconf:mode=offline,n=4,eta=100").run(
        PROBLEM, Context(backend=backend))
    assert result.answer == "7" and result.votes["7"] == pytest.approx(3 * 1.1)


async def test_online_deepconf_replayed_from_a_pool_matches_the_live_run() -> None:
    def respond(p: Prompt, i: int, r: GenerationRequest) -> str:
        return words(12 + (r.seed or 0) % 7, str((r.seed or 0) % 3))

    def tops(text: str, i: int) -> dict[str, float]:
        return UNSURE if i > 8 and len(text) % 2 else SURE

    spec = "deepconf:n=12,warmup=3,batch=3,window=3,eta=50,consensus=0.99"
    live_backend = ScriptedBackend(responder=respond, token_tops=tops)
    live = await make_strategy(spec).run(PROBLEM, Context(backend=live_backend, seed=3))
    # the pool: the same samples recorded whole, in the order the live run drew them
    recorder = ScriptedBackend(responder=respond, token_tops=tops)
    pool = [(await recorder.generate(GenerationRequest(
        prompt=PROBLEM.prompt(), seed=r.seed, logprobs=True, top_logprobs=5))).completions[0]
        for r in live_backend.requests]
    replay = ReplayBackend(pool)
    replayed = await make_strategy(spec).run(PROBLEM, Context(backend=replay, seed=3))
    assert live.usage.stopped_traces >= 1
    assert replayed.answer == live.answer and replayed.votes == live.votes
    for field in ("generated_tokens", "stopped_traces", "stopped_tokens", "calls"):
        assert getattr(replayed.usage, field) == getattr(live.usage, field), field


def probe_backend(probe_answers: list[str], trace: str) -> ScriptedBackend:
    answers = iter(probe_answers)
    return ScriptedBackend(responder=lambda p, i, r: f"{next(answers)}}}" if p.prefix
                           else trace)


async def test_a_probe_that_agrees_k_times_stops_the_trace() -> None:
    backend = probe_backend(["41", "42", "42", "42", "9"], words(60))
    ctx = Context(backend=backend)
    result = await make_strategy("certainty-probe:probe_every=5,k=3").run(PROBLEM, ctx)
    u = result.usage
    assert result.answer == "42" and result.extra["probes"] == 4
    assert result.candidates[0].completion.finish_reason == "stopped"
    assert (u.stopped_traces, u.stopped_tokens) == (1, 20)  # probed at 5, 10, 15, 20 words
    assert u.generated_tokens == 20 + 4 and u.calls == 5  # each probe wrote one word
    probes = [r for r in backend.requests if r.prompt.prefix]
    assert probes[-1].prompt.prefix.startswith("step " * 19 + "step")
    assert probes[-1].temperature == 0.0 and probes[-1].stop == ("}",)


async def test_uncertain_probes_do_not_count_towards_the_streak() -> None:
    guessed = iter([" 42", " 42", "42", "42", "42", "42"])
    backend = ScriptedBackend(
        responder=lambda p, i, r: f"{next(guessed)}}}" if p.prefix else words(60),
        logprob=lambda text: -3.0 if text.startswith(" ") else -0.1)
    result = await make_strategy("certainty-probe:probe_every=5,k=3,min_certainty=0.5").run(
        PROBLEM, Context(backend=backend))
    assert result.answer == "42" and result.extra["probes"] == 5
    assert result.usage.stopped_tokens == 25  # the guesses at 5 and 10 words did not count
    assert all(r.logprobs for r in backend.requests if r.prompt.prefix)


async def test_probes_that_keep_changing_never_stop_the_trace() -> None:
    backend = probe_backend([str(k) for k in range(20)], words(30))
    result = await make_strategy("certainty-probe:probe_every=5,k=2").run(
        PROBLEM, Context(backend=backend))
    assert result.answer == "42" and result.usage.stopped_traces == 0
    assert result.usage.generated_tokens == 34 + result.extra["probes"]


async def test_certainty_probe_votes_over_probed_and_final_answers() -> None:
    traces = iter([words(30, "5"), words(3, "6"), words(30, "5")])
    backend = ScriptedBackend(responder=lambda p, i, r: "5}" if p.prefix else next(traces))
    result = await make_strategy("certainty-probe:n=3,probe_every=5,k=2").run(
        PROBLEM, Context(backend=backend))
    assert result.answer == "5" and result.votes == {"5": 2.0, "6": 1.0}
    assert result.usage.stopped_traces == 2


def test_trace_confidence_measures() -> None:
    scores = [3.0, 1.0, 2.0, 4.0, 0.5]
    assert trace_confidence(scores, "mean") == pytest.approx(2.1)
    assert trace_confidence(scores, "lowest-window", window=2) == pytest.approx(1.5)
    assert trace_confidence(scores, "tail", window=2) == pytest.approx(2.25)
    assert trace_confidence(scores, "bottom", window=2, q=0.5) == pytest.approx((1.5 + 2.0) / 2)
    assert token_scores([-0.5], None) == [-0.5]
    assert token_scores([-0.5], [{"x": -0.5, "y": -1.5}], k=1) == [0.5]
    assert token_entropy({"x": math.log(0.5), "y": math.log(0.5)}) == pytest.approx(math.log(2))
    assert token_entropy({"x": 0.0}) == 0.0


def test_deepconf_settings_are_checked() -> None:
    with pytest.raises(SpecError):
        make_strategy("deepconf:n=4,warmup=8")
    with pytest.raises(SpecError):
        make_strategy("deepconf:measure=median")


async def test_a_failing_trace_stops_the_others_and_raises() -> None:
    calls = iter(range(100))

    def respond(p: Prompt, i: int, r: GenerationRequest) -> str:
        if next(calls) == 1:
            raise BackendError("engine died")
        return words(50)

    ctx = Context(backend=ScriptedBackend(responder=respond))
    with pytest.raises(BackendError, match="engine died"):
        await ctx.traces(PROBLEM, 2)
    u = ctx.ledger.close()
    assert u.cut_calls == 1 and 0 < u.generated_tokens < 54 and u.stopped_traces == 0
