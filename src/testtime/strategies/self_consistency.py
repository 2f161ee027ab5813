"""Self-consistency (Wang et al., 2023): sample n reasoning paths, return the majority answer.

With ``samples=SPEC`` the paths are those SPEC's strategy draws (tool-integrated traces,
programs), and the vote is over their answers.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from testtime.policy.pools import Pool
from testtime.strategies.aggregate import aggregated_result
from testtime.strategies.base import Context, strategies
from testtime.strategies.samples import SamplesOption
from testtime.types import Problem, Result


@strategies.register("self-consistency")
class SelfConsistency(SamplesOption):
    """Sample n solutions and return the most common answer (deterministic tie-break); free
    text with no answer to vote on is aggregated by universal self-consistency."""

    whole_replies: ClassVar[bool] = True
    draws_samples: ClassVar[bool] = True
    pool: ClassVar[Pool | None] = Pool("majority")

    n: int = Field(default=8, ge=1, le=4096)

    async def run(self, problem: Problem, ctx: Context) -> Result:
        """Sample, then majority-vote over equivalent answers."""
        candidates = await self.draw(problem, ctx, self.n)
        return await aggregated_result(problem, candidates, ctx)
