"""Tool-integrated traces as the samples of other strategies (``samples=SPEC``), scripted.

Self-consistency, first-finish and DeepConf take whatever the samples spec's strategy draws
without naming it: first-finish races whole traces (code runs included) and bills the ones it
cancels, DeepConf weighs a trace by the tokens it generated in all its segments.
"""

from __future__ import annotations

import itertools

import pytest

from testtime.backends.scripted import ScriptedBackend
from testtime.code.sandbox import available
from testtime.confidence import first_below, token_confidence
from testtime.eval.runner import solve
from testtime.policy import Choice, draw_spec
from testtime.registry import ClientRules, SpecError, SpecForbidden, build
from testtime.serve.config import ServeConfig
from testtime.strategies import make_strategy, strategies
from testtime.strategies.base import Context
from testtime.strategies.tool_integrated import PAUSE
from testtime.types import GenerationRequest, Problem, Prompt, Result

NEEDS_BOX = pytest.mark.skipif(not (available("namespace") or available("userns")),
                               reason="needs a real sandbox (root or user namespaces)")
PROBLEM = Problem(id="p", question="Ann has 6 bags of 7 apples. How many apples?",
                  reference="42")
SURE = {"a": -0.05, "b": -3.0}      # confidence 1.525
UNSURE = {"a": -1.0, "b": -1.2}     # confidence 1.1
MULTIPLY = "Multiply.\n```python\nprint(6 * 7)\n```\n"


def words(step: str) -> int:
    """The scripted tokens a step generates (up to the pause, if it pauses)."""
    return len(step.split("\n```\n")[0].split())


async def run(spec: str, backend: ScriptedBackend) -> Result:
    return await solve(PROBLEM, make_strategy(spec), backend, spec=spec)


def first_steps(texts: list[str], after: dict[str, str]):
    """A responder: trace i's first step is ``texts[i]`` (in the order the traces start);
    a continuation answers ``after[output]`` for the output the trace was shown last."""
    starts = itertools.count()

    def respond(prompt: Prompt, i: int, req: GenerationRequest) -> str:
        if "```output" not in prompt.prefix:
            return texts[next(starts) % len(texts)]
        shown = prompt.prefix.rsplit("```output\n", 1)[1].split("\n", 1)[0]
        return after[shown]
    return respond


@NEEDS_BOX
async def test_self_consistency_votes_over_tool_traces_through_the_samples_option() -> None:
    respond = first_steps([MULTIPLY],
                          {"42": "So 42 apples. The answer is 42."})
    backend = ScriptedBackend(responder=respond)
    result = await run("self-consistency:n=3,samples=[tool-integrated:max_calls=1]", backend)
    assert result.answer == "42" and result.votes == {"42": 3.0}
    assert result.usage.sandbox_runs == 3 and result.usage.calls == 6
    assert all("```output\n42\n```\nSo 42 apples." in c.text for c in result.candidates)
    assert [r.stop for r in backend.requests].count(PAUSE) == 3
    generated = words(MULTIPLY) + words("So 42 apples. The answer is 42.")
    assert all(c.completion.generated_tokens == generated for c in result.candidates)


@NEEDS_BOX
async def test_first_finish_keeps_the_first_trace_to_finish_and_bills_the_cancelled() -> None:
    """Trace 0 runs a quick block and answers; trace 1 is in the sandbox (a 2 s block) and
    trace 2 still generating when trace 0 is done: both are cancelled and billed."""
    respond = first_steps([MULTIPLY,
                           "Wait.\n```python\nimport time\ntime.sleep(2)\nprint(5)\n```\n",
                           "step " * 300 + "The answer is 9."],
                          {"42": "So The answer is 42.", "5": "So The answer is 5."})
    backend = ScriptedBackend(responder=respond, delay=0.02)
    result = await run("first-finish:n=3,samples=[tool-integrated:max_calls=1]", backend)
    assert result.answer == "42" and result.extra["cancelled"] == 2
    [winner] = result.candidates
    assert winner.completion.generated_tokens == words(MULTIPLY) + words("So The answer is 42.")
    u = result.usage
    assert u.sandbox_runs == 2, "the run cancelled in the box is billed too"
    assert backend.cancelled == 1 and u.cut_calls == 1
    generated_by_losers = u.generated_tokens - winner.completion.generated_tokens
    assert 5 < generated_by_losers < 5 + 304, "the cut trace is billed what it generated"


@NEEDS_BOX
async def test_deepconf_weighs_a_tool_trace_by_all_its_segments() -> None:
    """The trace answering 42 is sure while it computes and unsure at its end; the traces
    answering 7 the other way round. Over the last segment alone 7 would be kept; over the
    whole trace (the tool output not counted) 42 is."""
    respond = first_steps(["calm " * 9 + "```python\nprint(6 * 7)\n```\n"]
                          + ["hmm " * 9 + "```python\nprint(3 + 4)\n```\n"] * 3,
                          {"42": "So The answer is 42.", "7": "So The answer is 7."})
    tops = lambda text, i: SURE if "calm" in text or "is 7." in text else UNSURE  # noqa: E731
    backend = ScriptedBackend(responder=respond, token_tops=tops)
    spec = ("deepconf:mode=offline,n=4,eta=25,measure=mean,top_logprobs=2,"
            "samples=[tool-integrated:max_calls=1]")
    result = await run(spec, backend)
    assert result.answer == "42"
    sure, unsure = token_confidence(SURE), token_confidence(UNSURE)
    # 13 sure words up to the block's end, 5 unsure ones after the output (not counted)
    assert result.votes == {"42": pytest.approx((13 * sure + 5 * unsure) / 18)}
    for c in result.candidates:
        comp = c.completion
        assert comp.logprobs is not None and comp.top_logprobs is not None
        assert len(comp.logprobs) == len(comp.top_logprobs) == comp.generated_tokens == 18
    assert all(r.top_logprobs == 2 for r in backend.requests)


@NEEDS_BOX
async def test_an_online_watcher_sees_a_tool_trace_across_its_segments() -> None:
    """The window spans the tool call: the first segment ends on an unsure word and the next
    starts with one, so a window of two first falls below the threshold there."""
    first = "calm calm calm\n```python\nhmm = 6 * 7\nprint(hmm)\n```\n"
    then = "hmm calm The answer is 42."
    respond = first_steps([first], {"42": then})
    tops = lambda text, i: UNSURE if "hmm" in text.split()[i] else SURE  # noqa: E731
    backend = ScriptedBackend(responder=respond, token_tops=tops)
    ctx = Context(backend=backend)
    sampler = make_strategy("tool-integrated:max_calls=1")
    [trace] = await sampler.draw(PROBLEM, ctx, 1, top_logprobs=2,
                                 watch=make_strategy("deepconf:window=2").watcher(1.3))
    words = first.split("\n```\n")[0].split() + then.split()
    scores = [token_confidence(UNSURE if "hmm" in w else SURE) for w in words]
    at = first_below(scores, 2, 1.3)
    assert at == len(first.split()) - 1 + 1, "the window falls below across the tool call"
    assert trace.completion.finish_reason == "stopped"
    assert trace.completion.generated_tokens == at
    assert ctx.ledger.usage.sandbox_runs == 1 and ctx.ledger.usage.stopped_traces == 1


@NEEDS_BOX
async def test_online_deepconf_over_tool_traces_votes_without_the_stopped() -> None:
    """Warm-up: two sure traces (42), two unsure (7); the threshold is their median. Of the
    next four, the three unsure ones are stopped before their block runs."""
    sure = "calm calm calm calm\n```python\nprint(6 * 7)\n```\n"
    unsure = "hmm hmm hmm hmm\n```python\nprint(3 + 4)\n```\n"
    respond = first_steps([sure, sure, unsure, unsure, unsure, unsure, sure, unsure],
                          {"42": "calm calm The answer is 42.",
                           "7": "hmm hmm The answer is 7."})
    tops = lambda text, i: UNSURE if "hmm" in text else SURE  # noqa: E731
    backend = ScriptedBackend(responder=respond, token_tops=tops)
    spec = ("deepconf:n=8,warmup=4,batch=4,window=2,eta=50,consensus=1.0,top_logprobs=2,"
            "samples=[tool-integrated:max_calls=1]")
    result = await run(spec, backend)
    assert result.answer == "42" and "7" not in result.votes
    assert result.extra["stopped"] == 3 and result.usage.stopped_traces == 3
    assert result.usage.sandbox_runs == 5, "a trace stopped before its block runs no code"


@NEEDS_BOX
async def test_a_trace_out_of_tokens_right_after_a_run_has_no_answer() -> None:
    backend = ScriptedBackend.cycle(["a b ```python\nprint(5)\n```\n"])
    result = await run("tool-integrated:n=1,max_tokens=4", backend)
    [trace] = result.candidates
    assert trace.text.endswith("```output\n5\n```\n") and result.usage.sandbox_runs == 1
    assert trace.completion.finish_reason == "length" and trace.answer is None


@NEEDS_BOX
async def test_offered_traces_are_taken_by_a_draw_alike_and_never_by_a_plain_sample() -> None:
    backend = ScriptedBackend.cycle(["```python\nprint(42)\n```\n", "The answer is 42."])
    ctx = Context(backend=backend)
    sampler = make_strategy("tool-integrated:max_calls=1")
    drawn = await sampler.draw(PROBLEM, ctx, 2)
    sampler.offer_drawn(PROBLEM, ctx, drawn)
    assert await ctx.sample(sampler.draw_prompt(PROBLEM), 1, stop=(), continued=True)
    assert len(ctx.offered) == 1, "a plain sample of the same prompt takes no trace"
    other = make_strategy("tool-integrated:max_calls=2")
    calls = len(backend.requests)
    assert len(await other.draw(PROBLEM, ctx, 1)) == 1 and len(backend.requests) > calls
    calls = len(backend.requests)
    again = await sampler.draw(PROBLEM, ctx, 3)
    assert again[:2] == drawn and len(backend.requests) == calls + 2


def test_an_unknown_or_unsuitable_samples_spec_fails_at_construction() -> None:
    with pytest.raises(SpecError, match="samples='nope': unknown strategy 'nope'"):
        make_strategy("self-consistency:samples=nope")
    with pytest.raises(SpecError, match=r"'beam' draws no samples of its own.*tool-integrated"):
        make_strategy("first-finish:samples=[beam:n=4]")
    with pytest.raises(SpecError, match="n belong to the outer strategy 'deepconf'"):
        make_strategy("deepconf:mode=offline,samples=[tool-integrated:n=8]")
    with pytest.raises(SpecError, match="max_calls"):
        make_strategy("self-consistency:samples=[tool-integrated:max_calls=99]")


def test_the_samples_spec_inherits_the_outer_temperature_and_max_tokens() -> None:
    sc = make_strategy("self-consistency:temperature=0.3,max_tokens=200,"
                       "samples=[tool-integrated:max_tokens=300]")
    assert (sc.sampler.temperature, sc.sampler.max_tokens) == (0.3, 300)
    assert not sc.samples_whole_replies() and sc.pooled() is None
    assert make_strategy("self-consistency").samples_whole_replies()


def test_a_samples_spec_that_runs_code_is_the_operators_to_allow() -> None:
    rules = ServeConfig().client_rules()
    build(strategies, "self-consistency:n=4", client=rules)
    for spec in ("self-consistency:samples=[tool-integrated]",
                 "first-finish:samples=[program]", "deepconf:samples=[tool-integrated]"):
        with pytest.raises(SpecForbidden, match="not enabled for requests"):
            build(strategies, spec, client=rules)
    allowed = ClientRules(allowed={"strategy": ["self-consistency", "tool-integrated"],
                                   "verifier": None})
    build(strategies, "self-consistency:samples=[tool-integrated:max_calls=1]", client=allowed)
    with pytest.raises(SpecForbidden, match="operator"):
        build(strategies, "self-consistency:samples=[tool-integrated:timeout=60]",
              client=allowed)


def test_tool_traces_pool_as_their_own_family_and_samples_specs_do_not_pool() -> None:
    choice = Choice(spec="tool-integrated:n=4,max_calls=2")
    assert (choice.family, choice.k, choice.label) == ("tool-integrated", 4,
                                                        "tool-integrated@4")
    assert choice.draw == draw_spec("tool-integrated:n=8,max_calls=2") != draw_spec(
        "tool-integrated:n=8,max_calls=1")
    wrapped = Choice(spec="self-consistency:n=4,samples=[tool-integrated]")
    assert wrapped.draw is None and wrapped.k == 0 and wrapped.family == "self-consistency"
