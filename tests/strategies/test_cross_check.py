"""Chains of thought and programs voting across kinds, on the scripted backend."""

from __future__ import annotations

import pytest

from testtime.backends.scripted import ScriptedBackend
from testtime.code.sandbox import available
from testtime.eval.runner import solve
from testtime.strategies import BestOfN, ProgramThoughts, make_strategy
from testtime.strategies.cross_check import cross_vote
from testtime.strategies.program import SYSTEM
from testtime.types import Candidate, Completion, GenerationRequest, Problem, Prompt, Result

NEEDS_BOX = pytest.mark.skipif(not (available("namespace") or available("userns")),
                               reason="needs a real sandbox (root or user namespaces)")
PROBLEM = Problem(id="p", question="What is 3 + 4?", reference="7")


def cand(answer: str | None) -> Candidate:
    return Candidate(text=f"The answer is {answer}.", answer=answer,
                     completion=Completion(text="", finish_reason="stop"))


def scripted(traces: list[str], programs: list[str]) -> ScriptedBackend:
    def respond(prompt: Prompt, i: int, req: GenerationRequest) -> str:
        is_program = prompt.messages[0].content == SYSTEM
        texts = programs if is_program else traces
        return texts[i % len(texts)]

    return ScriptedBackend(responder=respond)


def test_agreement_across_kinds_outweighs_agreement_within_one() -> None:
    traces = [cand("5"), cand("5"), cand("7")]
    programs = [cand("7"), cand(None)]
    answer, votes, agreement = cross_vote(traces, programs, cross=1.0)
    assert answer == "7"
    assert votes == {"7": 3.0, "5": 2.0}
    assert agreement == {"7": (1, 1), "5": (2, 0)}
    plain, plain_votes, _ = cross_vote(traces, programs, cross=0.0)
    assert plain == "5" and plain_votes == {"5": 2.0, "7": 2.0}
    assert cross_vote([cand(None)], [cand(None)], 1.0) == (None, {}, {})


def test_equivalent_answers_of_both_kinds_are_one_class() -> None:
    answer, votes, agreement = cross_vote([cand("7.0")], [cand("7"), cand("8")], cross=2.0)
    assert answer in {"7", "7.0"}
    assert votes == {answer: 4.0, "8": 1.0} and agreement[answer] == (1, 1)


@NEEDS_BOX
async def test_cross_check_samples_both_kinds_and_bills_the_sandbox() -> None:
    backend = scripted(["3 + 4 = 5. The answer is 5.", "The answer is 5.",
                        "3 plus 4 is 7. The answer is 7."],
                       ["```python\nanswer = 3 + 4\nprint(answer)\n```",
                        "```python\nprint(3 / 0)\n```"])
    strategy = make_strategy("cross-check:n=3,programs=2")
    result: Result = await solve(PROBLEM, strategy, backend, spec="cross-check")
    assert result.answer == "7"
    assert result.votes == {"7": 3.0, "5": 2.0}
    assert result.extra["kinds"] == ["trace"] * 3 + ["program"] * 2
    assert result.extra["agreement"]["7"] == {"traces": 1, "programs": 1}
    assert [c.answer for c in result.candidates[3:]] == ["7", None]
    assert result.usage.calls == 2 and result.usage.sandbox_runs == 2
    assert sorted(r.n for r in backend.requests) == [2, 3]


@NEEDS_BOX
async def test_any_drawing_strategy_samples_programs_through_the_mixin() -> None:
    class ProgramBestOfN(ProgramThoughts, BestOfN):
        """Best-of-n over programs: the draw step is the mixin's, the choice best-of-n's."""

    backend = scripted(["unused"], ["```python\nprint(6)\n```", "```python\nprint(7)\n```"])
    result = await solve(PROBLEM, ProgramBestOfN(n=2, verifier="reference"), backend,
                         spec="program best-of-n")
    assert result.answer == "7"
    assert [c.answer for c in result.candidates] == ["6", "7"]
    assert result.usage.sandbox_runs == 2
    assert not ProgramBestOfN.whole_replies
