"""Weighted combination of verifiers and the per-run score cache."""

from __future__ import annotations

import math

import pytest
from verifier_helpers import PROBLEM, cand

from testtime.backends.scripted import ScriptedBackend
from testtime.registry import SpecError
from testtime.strategies.base import make_strategy, open_context
from testtime.types import Problem, Prompt
from testtime.verifiers import CachedVerifier, VerifyContext, make_verifier
from testtime.verifiers.combo import parse_parts


def test_parse_parts() -> None:
    assert parse_parts("0.5*confidence|0.5*judge") == [(0.5, "confidence"), (0.5, "judge")]
    assert parse_parts("2*[confidence:mode=tail,window=4]|reference") == [
        (2.0, "[confidence:mode=tail,window=4]"), (1.0, "reference")]


@pytest.mark.parametrize(("spec", "message"), [
    ("combo:parts=[x*confidence]", "bad weight"),
    ("combo:parts=[-1*confidence]", "negative weight"),
    ("combo:parts=[0*confidence]", "positive weight"),
    ("combo:parts=[confidence||reference]", "empty part"),
    ("combo:parts=[nothing]", "unknown verifier"),
])
def test_bad_combo_specs(spec: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        make_verifier(spec)


async def test_combo_mixes_scores_by_weight() -> None:
    c = cand("The answer is 42.", "42", (-1.0, -1.0))
    w = cand("The answer is 41.", "41", (-0.1, -0.1))
    v = make_verifier("combo:parts=[3*reference|1*confidence]")
    assert v.needs_logprobs and v.needs_reference
    scores = await v.score(PROBLEM, [c, w], VerifyContext())
    assert math.isclose(scores[0].value, (3 * 1.0 + math.exp(-1.0)) / 4)
    assert math.isclose(scores[1].value, (3 * 0.0 + math.exp(-0.1)) / 4)


async def test_combo_with_a_judge_part() -> None:
    judge = ScriptedBackend(responder=lambda p, i, r: "Yes" if "42" in
                            p.messages[-1].content else "No")
    v = make_verifier("combo:parts=[0.5*[judge:mode=sample,k=2]|0.5*reference]")
    scores = await v.score(PROBLEM, [cand("The answer is 42.", "42"),
                                     cand("The answer is 4.", "4")],
                           VerifyContext(backend=judge))
    assert [s.value for s in scores] == [1.0, 0.0]


async def test_cache_never_scores_a_candidate_twice() -> None:
    judge = ScriptedBackend(responder=lambda p, i, r: "Yes")
    v = make_verifier("judge:mode=sample,k=1")
    assert isinstance(v, CachedVerifier)
    ctx = VerifyContext(backend=judge)
    a, b = cand("The answer is 42.", "42"), cand("The answer is 4.", "4")
    await v.score(PROBLEM, [a, b, a], ctx)
    await v.score(PROBLEM, [b, a], ctx)
    assert len(judge.requests) == 2
    assert (v.hits, v.misses) == (3, 2)
    other = Problem(id="p2", question="What is 6 * 7?")
    await v.score(other, [a], ctx)
    assert len(judge.requests) == 3


async def test_strategy_builds_its_verifier_once_per_run_so_the_cache_spans_problems() -> None:
    judge_calls: list[str] = []

    def respond(p: Prompt, i: int, r: object) -> str:
        if "Proposed solution" in p.messages[-1].content:
            judge_calls.append(p.messages[-1].content)
            return "Yes"
        return "The answer is 42."

    backend = ScriptedBackend(responder=respond)
    strategy = make_strategy("best-of-n:n=4,verifier=[judge:mode=sample,k=1]")
    await strategy.run(PROBLEM, open_context(strategy, backend))
    await strategy.run(PROBLEM, open_context(strategy, backend))
    assert len(judge_calls) == 1
    assert strategy.own_verifier is strategy.own_verifier
