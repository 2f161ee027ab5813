"""The model's own confidence from token logprobs: mean, lowest window (DeepConf), bottom
share of windows, tail; the measures themselves live in :mod:`testtime.confidence`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

from pydantic import Field

from testtime.confidence import Measure, trace_confidence
from testtime.types import Candidate, Problem, Score
from testtime.verifiers.base import VerifierSettings, VerifyContext, verifiers


@verifiers.register("confidence")
class ConfidenceVerifier(VerifierSettings):
    """exp(mean token logprob) over the whole candidate, its weakest window or its tail.

    ``mode=mean`` is the geometric-mean token probability; ``mode=lowest-window`` is the
    lowest mean over sliding windows of ``window`` tokens (DeepConf's lowest group confidence,
    Fu et al., 2025); ``mode=bottom`` the mean of the lowest ``q`` share of those windows;
    ``mode=tail`` uses the last ``window`` tokens only. No extra model and no extra calls.
    Candidates without logprobs score 0.5, i.e. no information.
    """

    needs_logprobs: ClassVar[bool] = True

    mode: Measure = "mean"
    window: int = Field(default=32, ge=1, le=100_000)
    q: float = Field(default=0.1, gt=0.0, le=1.0,
                     description="share of lowest windows averaged by mode=bottom")

    async def score(self, problem: Problem, candidates: Sequence[Candidate],
                    ctx: VerifyContext) -> list[Score]:
        """Score each candidate from its own token logprobs."""
        return [self.one(c) for c in candidates]

    def one(self, c: Candidate) -> Score:
        """The confidence score of one candidate."""
        lps = c.completion.logprobs
        if not lps:
            return Score(value=0.5, detail="no logprobs")
        m = trace_confidence(lps, self.mode, self.window, self.q)
        return Score(value=math.exp(m), detail=f"{self.mode} logprob {m:.3f}")
