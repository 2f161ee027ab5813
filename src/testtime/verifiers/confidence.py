"""The model's own confidence from token logprobs: mean, lowest window (DeepConf), tail."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar, Literal

from pydantic import Field

from testtime.types import Candidate, Problem, Score
from testtime.verifiers.base import VerifierSettings, VerifyContext, verifiers


def window_means(logprobs: Sequence[float], window: int) -> list[float]:
    """Mean logprob of every sliding window of ``window`` tokens (one window if shorter)."""
    w = min(window, len(logprobs))
    acc = sum(logprobs[:w])
    out = [acc / w]
    for i in range(w, len(logprobs)):
        acc += logprobs[i] - logprobs[i - w]
        out.append(acc / w)
    return out


@verifiers.register("confidence")
class ConfidenceVerifier(VerifierSettings):
    """exp(mean token logprob) over the whole candidate, its weakest window or its tail.

    ``mode=mean`` is the geometric-mean token probability; ``mode=lowest-window`` is the
    lowest mean over sliding windows of ``window`` tokens (DeepConf's lowest group confidence,
    Fu et al., 2025); ``mode=tail`` uses the last ``window`` tokens only. No extra model and no
    extra calls. Candidates without logprobs score 0.5, i.e. no information.
    """

    needs_logprobs: ClassVar[bool] = True

    mode: Literal["mean", "lowest-window", "tail"] = "mean"
    window: int = Field(default=32, ge=1, le=100_000)

    async def score(self, problem: Problem, candidates: Sequence[Candidate],
                    ctx: VerifyContext) -> list[Score]:
        """Score each candidate from its own token logprobs."""
        return [self.one(c) for c in candidates]

    def one(self, c: Candidate) -> Score:
        """The confidence score of one candidate."""
        lps = c.completion.logprobs
        if not lps:
            return Score(value=0.5, detail="no logprobs")
        if self.mode == "mean":
            m = sum(lps) / len(lps)
        elif self.mode == "tail":
            tail = lps[-self.window:]
            m = sum(tail) / len(tail)
        else:
            m = min(window_means(lps, self.window))
        return Score(value=math.exp(m), detail=f"{self.mode} logprob {m:.3f}")
