"""Generative and confidence verifiers on a real embedded model (SmolLM2-135M)."""

from __future__ import annotations

import pytest
from verifier_helpers import cand

from testtime.backends.embedded import EmbeddedBackend
from testtime.budget import Ledger
from testtime.strategies.base import make_strategy, open_context
from testtime.types import Candidate, GenerationRequest, Problem, Prompt
from testtime.verifiers import VerifyContext, make_verifier

pytestmark = pytest.mark.model

PROBLEM = Problem(id="m1", question="What is 12 + 30?", reference="42",
                  instruction="End with: The answer is N.")


def right_and_wrong() -> list[Candidate]:
    """A right and a wrong solution of PROBLEM."""
    return [cand("12 + 30 = 42. The answer is 42.", "42"),
            cand("12 + 30 = 52. The answer is 52.", "52")]


async def test_embedded_backend_returns_top_logprobs(smollm: EmbeddedBackend) -> None:
    gen = await smollm.generate(GenerationRequest(
        prompt=Prompt.chat("Is 2 + 2 = 4? Answer Yes or No."), max_tokens=2,
        temperature=0.0, top_logprobs=5))
    tops = gen.completions[0].top_logprobs
    assert tops is not None and len(tops) == gen.completions[0].generated_tokens
    assert all(0 < len(t) <= 5 and max(t.values()) <= 0.0 for t in tops)


async def test_judge_scores_by_p_yes_and_caches(smollm: EmbeddedBackend) -> None:
    judge = make_verifier("judge")
    ledger = Ledger()
    ctx = VerifyContext(backend=smollm, ledger=ledger)
    cands = right_and_wrong()
    scores = await judge.score(PROBLEM, cands, ctx)
    assert all(0.0 < s.value < 1.0 and (s.detail or "").startswith("P(yes)") for s in scores)
    calls = ledger.usage.verifier_calls
    assert calls == 2 and ledger.usage.verifier_tokens > 0
    assert await judge.score(PROBLEM, cands[::-1], ctx) == scores[::-1]
    assert ledger.usage.verifier_calls == calls


async def test_judge_solves_once_then_grades_against_its_reference(smollm: EmbeddedBackend
                                                                   ) -> None:
    judge = make_verifier("judge:solve=48")
    ledger = Ledger()
    ctx = VerifyContext(backend=smollm, ledger=ledger)
    cands = right_and_wrong()
    scores = await judge.score(PROBLEM, cands, ctx)
    assert all(0.0 < s.value < 1.0 and (s.detail or "").startswith("P(yes)") for s in scores)
    assert ledger.usage.verifier_calls == 3 and ledger.usage.generated_tokens == 0
    assert ledger.usage.verifier_seconds > 0
    await judge.score(PROBLEM, [cand("The answer is 40.", "40")], ctx)
    assert ledger.usage.verifier_calls == 4


async def test_judge_select_gives_a_distribution(smollm: EmbeddedBackend) -> None:
    cands = right_and_wrong()
    scores = await make_verifier("judge-select:group=2").score(
        PROBLEM, cands, VerifyContext(backend=smollm))
    assert sum(s.value for s in scores) == pytest.approx(1.0)


async def test_best_of_n_with_confidence_and_judge_combo(smollm: EmbeddedBackend) -> None:
    spec = ("best-of-n:n=3,max_tokens=40,verifier=[combo:parts="
            "[0.5*[confidence:mode=lowest-window,window=8]|0.5*judge]]")
    strategy = make_strategy(spec)
    result = await strategy.run(PROBLEM, open_context(strategy, smollm, seed=1))
    assert len(result.candidates) == 3
    assert all(c.score is not None and 0.0 <= c.score.value <= 1.0 for c in result.candidates)
    assert all(c.completion.logprobs for c in result.candidates)
    assert result.usage.verifier_calls >= 1 and result.usage.calls == 1
    chosen = result.extra["chosen"]
    best = max(c.score.value for c in result.candidates if c.has_answer == result.candidates[
        chosen].has_answer and c.score)
    assert result.candidates[chosen].score.value == best  # type: ignore[union-attr]
