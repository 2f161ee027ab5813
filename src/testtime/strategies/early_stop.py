"""Adaptive-consistency (Aggarwal et al., 2023): self-consistency that stops when confident.

    votes := {}
    while samples < max_n:
        sample a batch; add its answers to votes
        a, b := counts of the leading and the runner-up answer
        if P(p_a > p_b | a, b) under a Beta(a+1, b+1) posterior > threshold: stop
    return the leading answer
"""

from __future__ import annotations

import math
from typing import ClassVar

from pydantic import Field

from testtime.strategies.aggregate import aggregated_result
from testtime.strategies.base import Context, StrategySettings, strategies
from testtime.strategies.voting import tally
from testtime.types import Candidate, Problem, Result


def leader_probability(a: int, b: int) -> float:
    """P(X > 1/2) for X ~ Beta(a+1, b+1): the posterior that the leader beats the runner-up.

    Uses the identity P(Beta(α, β) > x) = P(Binomial(α+β-1, x) < α) for integer α, β.
    """
    n = a + b + 1
    return sum(math.comb(n, j) for j in range(a + 1)) / 2**n


@strategies.register("early-stop")
class EarlyStop(StrategySettings):
    """Sample in batches; stop once the leading answer's posterior exceeds ``threshold``."""

    whole_replies: ClassVar[bool] = True

    max_n: int = Field(default=32, ge=1, le=4096, description="most samples")
    batch: int = Field(default=4, ge=1, le=4096, description="samples per round")
    threshold: float = Field(default=0.95, gt=0.5, lt=1.0,
                             description="posterior needed to stop")

    async def run(self, problem: Problem, ctx: Context) -> Result:
        """Batch, tally, test the stopping rule, repeat."""
        candidates: list[Candidate] = []
        confidence = 0.0
        while len(candidates) < self.max_n and not ctx.exhausted:
            want = min(self.batch, self.max_n - len(candidates))
            got = await self.draw(problem, ctx, want)
            if not got:
                break
            candidates += got
            rows = tally(candidates)
            if rows:
                confidence = leader_probability(rows[0][2], rows[1][2] if len(rows) > 1 else 0)
                if confidence >= self.threshold:
                    break
        return await aggregated_result(problem, candidates, ctx, samples=len(candidates),
                                       confidence=round(confidence, 4))
