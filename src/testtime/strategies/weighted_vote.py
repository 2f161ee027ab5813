"""Weighted majority voting: each sample votes with its verifier score (e.g. Li et al., 2023)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from testtime.strategies.aggregate import aggregated_result
from testtime.strategies.base import Context, StrategySettings, strategies
from testtime.types import Problem, Result
from testtime.verifiers.confidence import ConfidenceVerifier


@strategies.register("weighted-vote")
class WeightedVote(StrategySettings):
    """Sample n solutions, score each, and return the answer with the largest total score."""

    uses_verifier: ClassVar[bool] = True
    n: int = Field(default=8, ge=1, le=4096)

    async def run(self, problem: Problem, ctx: Context) -> Result:
        """Sample, score, then vote with the scores as weights."""
        ctx.verifier = self.make_verifier(ctx.verifier) or ConfidenceVerifier()
        candidates = await self.draw(problem, ctx, self.n)
        scored = await ctx.score(problem, candidates)
        weights = [c.score.value if c.score else 0.0 for c in scored]
        return await aggregated_result(problem, scored, ctx, weights)
