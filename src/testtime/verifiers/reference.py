"""Grades candidates against the problem's known answer; for evaluation and oracle studies."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from testtime.answers import is_correct
from testtime.types import Candidate, Problem, Score
from testtime.verifiers.base import UnfitProblem, VerifierSettings, VerifyContext, verifiers


class MissingReference(UnfitProblem):
    """The reference verifier was used on a problem with no known answer."""


@verifiers.register("reference")
class ReferenceVerifier(VerifierSettings):
    """1.0 when the candidate's answer is equivalent to the reference answer, else 0.0."""

    needs_reference: ClassVar[bool] = True

    async def score(self, problem: Problem, candidates: Sequence[Candidate],
                    ctx: VerifyContext) -> list[Score]:
        """Grade each candidate's extracted answer."""
        if problem.reference is None:
            raise MissingReference(f"problem {problem.id!r} has no reference answer")
        return [Score(value=float(is_correct(c.answer, problem.reference))) for c in candidates]
