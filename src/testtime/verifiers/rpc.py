"""Probability-weighted voting weights after RPC (Zhou et al., 2025): perplexity consistency."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from pydantic import Field

from testtime.confidence import mean_probability
from testtime.types import Candidate, Problem, Score
from testtime.verifiers.base import VerifierSettings, VerifyContext, verifiers


@verifiers.register("rpc")
class RPCWeights(VerifierSettings):
    """Vote weights for ``weighted-vote:verifier=rpc``: each distinct path's probability.

    Perplexity consistency sums, per answer, the length-normalised probability
    exp(mean logprob) of each *distinct* sampled reasoning path, so repeats of one path count
    once. Reasoning pruning drops paths whose probability is below ``prune`` times the mean
    over the sampled paths (the paper fits a two-component mixture; this is its simple
    threshold form; ``prune=0`` keeps every path). A weight depends on the other samples, so
    these scores are never cached.
    """

    needs_logprobs: ClassVar[bool] = True
    cacheable: ClassVar[bool] = False

    prune: float = Field(default=0.0, ge=0.0, le=1.0)

    async def score(self, problem: Problem, candidates: Sequence[Candidate],
                    ctx: VerifyContext) -> list[Score]:
        """Probability per distinct path; 0 for repeats and pruned paths."""
        probs = [_prob(c) for c in candidates]
        mean = sum(probs) / len(probs) if probs else 0.0
        seen: set[str] = set()
        out = []
        for c, p in zip(candidates, probs, strict=True):
            key = c.text.strip()
            if key in seen:
                out.append(Score(value=0.0, detail="repeat of an earlier path"))
            elif p < self.prune * mean:
                out.append(Score(value=0.0, detail=f"pruned: p={p:.3f} < {self.prune}·mean"))
            else:
                out.append(Score(value=p, detail=f"path probability {p:.3f}"))
            seen.add(key)
        return out


def _prob(c: Candidate) -> float:
    lps = c.completion.logprobs
    return mean_probability(lps) if lps else 0.5
