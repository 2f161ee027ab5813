"""One sample, no search: the baseline every other strategy is measured against."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import ClassVar

from pydantic import Field

from testtime.strategies.base import Context, StrategySettings, strategies
from testtime.types import Problem, Result


@strategies.register("single")
class Single(StrategySettings):
    """Generate one solution (greedy by default) and return its answer."""

    whole_replies: ClassVar[bool] = True
    streams_tokens: ClassVar[bool] = True

    temperature: float = Field(default=0.0, ge=0.0, le=2.0)

    async def run(self, problem: Problem, ctx: Context) -> Result:
        """Sample once and extract the answer."""
        candidates = await ctx.sample(problem, 1, temperature=self.temperature,
                                      max_tokens=self.max_tokens)
        answer = candidates[0].answer if candidates else None
        return ctx.result(problem, answer, candidates)

    async def stream(self, problem: Problem, ctx: Context) -> AsyncGenerator[str | Result, None]:
        """The one sample's text as it is generated, then its Result."""
        sample = ctx.stream(problem, temperature=self.temperature, max_tokens=self.max_tokens)
        async with aclosing(sample) as pieces:
            async for piece in pieces:
                if isinstance(piece, str):
                    yield piece
                else:
                    yield ctx.result(problem, piece[0].answer if piece else None, piece)
