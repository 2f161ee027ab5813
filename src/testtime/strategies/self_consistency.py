"""Self-consistency (Wang et al., 2023): sample n reasoning paths, return the majority answer."""

from __future__ import annotations

from pydantic import Field

from testtime.strategies.base import Context, StrategySettings, strategies
from testtime.strategies.voting import vote
from testtime.types import Problem, Result


@strategies.register("self-consistency")
class SelfConsistency(StrategySettings):
    """Sample n solutions and return the most common answer (deterministic tie-break)."""

    n: int = Field(default=8, ge=1, le=4096)

    async def run(self, problem: Problem, ctx: Context) -> Result:
        """Sample, then majority-vote over equivalent answers."""
        candidates = await ctx.sample(problem, self.n, temperature=self.temperature,
                                      max_tokens=self.max_tokens)
        answer, votes = vote(candidates)
        return ctx.result(problem, answer, candidates, votes=votes)
