"""The model's own confidence: the geometric-mean token probability of a candidate."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

from testtime.types import Candidate, Problem, Score
from testtime.verifiers.base import VerifierSettings, VerifyContext, verifiers


@verifiers.register("confidence")
class ConfidenceVerifier(VerifierSettings):
    """exp(mean token logprob) of the candidate; no extra model, no extra calls.

    Candidates without logprobs (a backend that gives none) score 0.5, i.e. no information.
    """

    needs_logprobs: ClassVar[bool] = True

    async def score(self, problem: Problem, candidates: Sequence[Candidate],
                    ctx: VerifyContext) -> list[Score]:
        """Score each candidate by its mean token logprob."""
        return [self._one(c) for c in candidates]

    @staticmethod
    def _one(c: Candidate) -> Score:
        lps = c.completion.logprobs
        if not lps:
            return Score(value=0.5, detail="no logprobs")
        mean = sum(lps) / len(lps)
        return Score(value=math.exp(mean), detail=f"mean logprob {mean:.3f}")
