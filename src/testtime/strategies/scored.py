"""What best-of-n and weighted voting share: n whole replies, each scored by the verifier."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from testtime.strategies.base import Context, StrategySettings
from testtime.types import Candidate, Problem


class ScoredSamples(StrategySettings):
    """Sample ``n`` replies as :meth:`draw` takes them and score each (default verifier: the
    model's own confidence)."""

    uses_verifier: ClassVar[bool] = True
    default_verifier: ClassVar[str | None] = "confidence"
    whole_replies: ClassVar[bool] = True

    n: int = Field(default=8, ge=1, le=4096)

    async def scored(self, problem: Problem, ctx: Context) -> list[Candidate]:
        """The ``n`` samples, scored by the Context's verifier."""
        return await ctx.score(problem, await self.draw(problem, ctx, self.n))
