"""Confidence modes (mean, lowest window, tail) and RPC-style probability-weighted voting."""

from __future__ import annotations

import math

import pytest
from verifier_helpers import PROBLEM, cand

from testtime.backends.scripted import ScriptedBackend
from testtime.confidence import window_means
from testtime.registry import SpecError
from testtime.strategies.base import Context, make_strategy, open_context
from testtime.verifiers import VerifyContext, make_verifier

LPS = (-0.1, -0.1, -2.0, -2.0, -0.1, -0.3)


def test_window_means() -> None:
    assert window_means([-1.0, -3.0, -2.0], 2) == [-2.0, -2.5]
    assert window_means([-1.0], 8) == [-1.0]


@pytest.mark.parametrize(("spec", "mean_lp"), [
    ("confidence", sum(LPS) / 6),
    ("confidence:mode=lowest-window,window=2", -2.0),
    ("confidence:mode=lowest-window,window=3", (-0.1 - 2.0 - 2.0) / 3),
    ("confidence:mode=tail,window=2", -0.2),
])
async def test_confidence_modes(spec: str, mean_lp: float) -> None:
    scores = await make_verifier(spec).score(PROBLEM, [cand("x", "1", LPS)], VerifyContext())
    assert math.isclose(scores[0].value, math.exp(mean_lp))


async def test_lowest_window_separates_a_confident_run_with_one_bad_patch() -> None:
    steady = cand("a", "1", (-0.5,) * 8)
    patchy = cand("b", "2", (-0.01,) * 30 + (-3.0, -3.0))
    mean = await make_verifier("confidence").score(PROBLEM, [steady, patchy], VerifyContext())
    low = await make_verifier("confidence:mode=lowest-window,window=2").score(
        PROBLEM, [steady, patchy], VerifyContext())
    assert mean[1].value > mean[0].value
    assert low[1].value < low[0].value


async def test_no_logprobs_means_no_information() -> None:
    scores = await make_verifier("confidence:mode=tail").score(
        PROBLEM, [cand("x", "1")], VerifyContext())
    assert scores[0].value == 0.5


def test_bad_confidence_spec() -> None:
    with pytest.raises(SpecError, match="mode"):
        make_verifier("confidence:mode=median")
    with pytest.raises(SpecError, match="window"):
        make_verifier("confidence:window=0")


async def test_rpc_counts_each_distinct_path_once_and_prunes() -> None:
    a = cand("path A. The answer is 1.", "1", (-0.1,) * 4)
    b = cand("path B. The answer is 2.", "2", (-1.0,) * 4)
    weak = cand("path C. The answer is 3.", "3", (-5.0,) * 4)
    scores = await make_verifier("rpc:prune=0.5").score(PROBLEM, [a, a, b, weak],
                                                       VerifyContext())
    values = [s.value for s in scores]
    assert math.isclose(values[0], math.exp(-0.1)) and values[1] == 0.0
    assert math.isclose(values[2], math.exp(-1.0)) and values[3] == 0.0


async def test_weighted_vote_with_rpc_lets_probability_beat_repetition() -> None:
    texts = ["lucky guess. The answer is 7.", "lucky guess. The answer is 7.",
             "lucky guess. The answer is 7.", "careful: 6*7=42. The answer is 42.",
             "checked twice: 42. The answer is 42."]
    probs = {"7": -1.5, "42": -0.2}
    backend = ScriptedBackend.cycle(
        texts, logprob=lambda t: probs["42" if "42" in t else "7"])
    plain = await make_strategy("self-consistency:n=5").run(PROBLEM, Context(backend=backend))
    weighted = make_strategy("weighted-vote:n=5,verifier=rpc")
    rpc = await weighted.run(PROBLEM, open_context(weighted, backend))
    assert plain.answer == "7"
    assert rpc.answer == "42"
    assert backend.requests[-1].logprobs
