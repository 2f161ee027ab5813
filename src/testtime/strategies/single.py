"""One sample, no search: the baseline every other strategy is measured against."""

from __future__ import annotations

from pydantic import Field

from testtime.strategies.base import Context, StrategySettings, strategies
from testtime.types import Problem, Result


@strategies.register("single")
class Single(StrategySettings):
    """Generate one solution (greedy by default) and return its answer."""

    temperature: float = Field(default=0.0, ge=0.0, le=2.0)

    async def run(self, problem: Problem, ctx: Context) -> Result:
        """Sample once and extract the answer."""
        candidates = await ctx.sample(problem, 1, temperature=self.temperature,
                                      max_tokens=self.max_tokens)
        answer = candidates[0].answer if candidates else None
        return ctx.result(problem, answer, candidates)
