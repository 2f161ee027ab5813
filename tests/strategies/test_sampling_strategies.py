"""single, self-consistency, weighted-vote and best-of-n on the deterministic scripted backend."""

from __future__ import annotations

from testtime.backends.scripted import ScriptedBackend
from testtime.budget import Budget
from testtime.eval.runner import solve
from testtime.strategies import make_strategy
from testtime.types import Problem
from testtime.verifiers import make_verifier

PROBLEM = Problem(id="p", question="What is 2 + 2?", reference="4")


async def run(spec: str, backend: ScriptedBackend, budget: Budget | None = None,
              verifier: str | None = None):  # type: ignore[no-untyped-def]
    return await solve(PROBLEM, make_strategy(spec), backend, budget=budget, spec=spec,
                       verifier=make_verifier(verifier) if verifier else None)


async def test_single_uses_greedy_one_sample() -> None:
    backend = ScriptedBackend.cycle(["The answer is 4."])
    result = await run("single", backend)
    assert result.answer == "4"
    assert [(r.n, r.temperature) for r in backend.requests] == [(1, 0.0)]
    assert result.usage.generated_tokens == 4
    assert result.usage.calls == 1


async def test_self_consistency_majority_beats_first_sample() -> None:
    backend = ScriptedBackend.cycle(["The answer is 5.", "so 4", "The answer is 4.0",
                                     "I give up", "\\boxed{4}", "The answer is 5."])
    result = await run("self-consistency:n=6", backend)
    assert result.answer in {"4", "4.0"}
    assert result.votes == {result.answer: 3.0, "5": 2.0}
    assert len(result.candidates) == 6
    assert sum(c.has_answer for c in result.candidates) == 5
    assert backend.requests[0].n == 6


async def test_self_consistency_tie_break_is_order_independent() -> None:
    a = await run("self-consistency:n=4", ScriptedBackend.cycle(
        ["The answer is 7.", "The answer is 3.", "The answer is 7.", "The answer is 3."]))
    b = await run("self-consistency:n=4", ScriptedBackend.cycle(
        ["The answer is 3.", "The answer is 7.", "The answer is 3.", "The answer is 7."]))
    assert a.answer == b.answer == "3"


async def test_no_answers_at_all_gives_none_not_a_crash() -> None:
    result = await run("self-consistency:n=3", ScriptedBackend.cycle(["hmm", "unsure", "no"]))
    assert result.answer is None
    assert result.votes == {}
    assert len(result.candidates) == 3


def confident_in(answer: str):  # type: ignore[no-untyped-def]
    return lambda text: -0.05 if answer in text else -2.0


async def test_best_of_n_picks_highest_confidence() -> None:
    backend = ScriptedBackend.cycle(["The answer is 5.", "The answer is 4.", "The answer is 5."],
                                    logprob=confident_in("4"))
    result = await run("best-of-n:n=3,verifier=confidence", backend)
    assert result.answer == "4"
    assert backend.requests[0].logprobs
    assert result.extra["chosen"] == 1
    assert all(c.score is not None for c in result.candidates)


async def test_weighted_vote_can_overrule_the_plain_majority() -> None:
    texts = ["The answer is 5.", "The answer is 5.", "The answer is 4."]
    plain = await run("self-consistency:n=3", ScriptedBackend.cycle(texts))
    weighted = await run("weighted-vote:n=3", ScriptedBackend.cycle(
        texts, logprob=confident_in("4")), verifier="confidence")
    assert plain.answer == "5"
    assert weighted.answer == "4"
    assert weighted.votes["4"] > weighted.votes["5"]


async def test_budget_caps_samples_and_marks_exhaustion() -> None:
    backend = ScriptedBackend.cycle(["The answer is 4 ok"])  # 5 tokens each
    result = await run("self-consistency:n=16,max_tokens=5", backend,
                       budget=Budget(generated_tokens=20))
    assert len(result.candidates) == 4
    assert result.usage.generated_tokens <= 20
    assert result.budget_exhausted
    assert result.answer == "4"


async def test_budget_of_calls_stops_before_the_call() -> None:
    result = await run("self-consistency:n=4", ScriptedBackend.cycle(["The answer is 4."]),
                       budget=Budget(calls=1))
    assert result.usage.calls == 1
    assert not result.budget_exhausted


async def test_backend_max_n_is_respected_by_splitting() -> None:
    backend = ScriptedBackend.cycle(["The answer is 4."], max_n=64)
    await run("self-consistency:n=64", backend)
    assert [r.n for r in backend.requests] == [64]


async def test_a_sample_cut_by_max_tokens_answers_only_what_it_marked() -> None:
    backend = ScriptedBackend.cycle([
        "Step 1. Add 2 and 2 to get 4. Step 2. Now check the sum",
        "The answer is 4. Then more words follow here",
        "2 + 2 = 4"])
    result = await run("self-consistency:n=3,max_tokens=8", backend)
    cut, marked, short = result.candidates
    assert cut.completion.finish_reason == "length" and cut.answer is None
    assert marked.completion.finish_reason == "length" and marked.answer == "4"
    assert short.completion.finish_reason == "stop" and short.answer == "4"
    assert result.votes == {"4": 2.0}
