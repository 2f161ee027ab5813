"""Weighted majority voting: each sample votes with its verifier score (e.g. Li et al., 2023)."""

from __future__ import annotations

from typing import ClassVar

from testtime.policy.pools import Pool
from testtime.strategies.aggregate import aggregated_result
from testtime.strategies.base import Context, strategies
from testtime.strategies.scored import ScoredSamples
from testtime.types import Problem, Result


@strategies.register("weighted-vote")
class WeightedVote(ScoredSamples):
    """Sample n solutions, score each, and return the answer with the largest total score."""

    pool: ClassVar[Pool | None] = Pool("weighted")

    async def run(self, problem: Problem, ctx: Context) -> Result:
        """Sample, score, then vote with the scores as weights."""
        scored = await self.scored(problem, ctx)
        weights = [c.score.value if c.score else 0.0 for c in scored]
        return await aggregated_result(problem, scored, ctx, weights)
