"""no-thinking on the scripted backend: the prefilled reply, the vote, and probe reuse."""

from __future__ import annotations

from testtime.backends.scripted import ScriptedBackend
from testtime.eval.runner import solve
from testtime.strategies import make_strategy
from testtime.strategies.base import Context
from testtime.strategies.no_thinking import FINISHED_THINKING
from testtime.types import Problem

PROBLEM = Problem(id="p", question="What is 6 * 7?", reference="42")


async def test_plain_style_prefills_the_answer_cue_and_votes_on_short_answers() -> None:
    backend = ScriptedBackend.cycle([" 42.", " 41.", " 42.\nBecause 6 * 7 = 42."])
    result = await solve(PROBLEM, make_strategy("no-thinking:n=3"), backend,
                         spec="no-thinking:n=3")
    (req,) = backend.requests
    assert req.prompt.prefix == "The answer is"
    assert req.stop == ("\n",) and req.max_tokens == 16 and req.n == 3
    assert [c.text for c in result.candidates] == ["The answer is 42.", "The answer is 41.",
                                                   "The answer is 42."]
    assert result.answer == "42" and result.votes == {"42": 2.0, "41": 1.0}
    assert result.usage.generated_tokens == 3, "one word each: the line ends at the newline"


async def test_tags_style_closes_an_empty_thinking_block_and_lets_the_answer_run() -> None:
    backend = ScriptedBackend.cycle(["6 * 7 = 42, so the answer is 42."])
    result = await solve(PROBLEM, make_strategy("no-thinking:n=2,style=tags,max_tokens=64"),
                         backend, spec="no-thinking")
    (req,) = backend.requests
    assert req.prompt.prefix == FINISHED_THINKING and req.stop == ()
    assert result.answer == "42"
    assert all(c.text.startswith(FINISHED_THINKING) for c in result.candidates)


async def test_offered_draws_are_reused_by_the_next_run_drawing_alike() -> None:
    """A probe drawn by no-thinking and offered back is the first of the chosen run's answers:
    no-thinking@4 after a 2-answer probe samples 2 more, self-consistency samples all 4."""
    strategy = make_strategy("no-thinking:n=4")
    backend = ScriptedBackend.cycle([" 42."])
    ctx = Context(backend=backend)
    probe = await strategy.draw(PROBLEM, ctx, 2)
    strategy.offer_drawn(PROBLEM, ctx, probe)
    result = await strategy.run(PROBLEM, ctx)
    assert [r.n for r in backend.requests] == [2, 2]
    assert list(result.candidates[:2]) == probe and len(result.candidates) == 4

    other = Context(backend=ScriptedBackend.cycle(["The answer is 42."]))
    strategy.offer_drawn(PROBLEM, other, await strategy.draw(PROBLEM, other, 2))
    await make_strategy("self-consistency:n=4").run(PROBLEM, other)
    assert [r.n for r in other.backend.requests] == [2, 4]  # type: ignore[attr-defined]


async def test_with_a_verifier_the_answers_carry_confidence_but_the_vote_stays_plain() -> None:
    sure, unsure = {"a": -0.05, "b": -3.0}, {"a": -1.5, "b": -1.6}
    backend = ScriptedBackend(responder=lambda p, i, r: [" 41.", " 42.", " 42."][i],
                              token_tops=lambda text, i: sure if "41" in text else unsure)
    spec = "no-thinking:n=3,verifier=confidence"
    result = await solve(PROBLEM, make_strategy(spec), backend, spec=spec)
    scores = [c.score.value for c in result.candidates if c.score is not None]
    assert len(scores) == 3 and scores[0] > scores[1] == scores[2]
    assert result.answer == "42" and result.votes == {"42": 2.0, "41": 1.0}
    assert backend.requests[0].logprobs
