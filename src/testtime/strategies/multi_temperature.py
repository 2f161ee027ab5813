"""Multi-temperature voting: sample at several temperatures and vote over all of them.

    for each temperature t (concurrently): sample n / |temperatures| solutions at t
    return the majority answer over every sample
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from pydantic import Field, field_validator

from testtime.strategies.aggregate import aggregated_result
from testtime.strategies.base import Context, StrategySettings, strategies
from testtime.types import Problem, Result


@strategies.register("multi-temperature")
class MultiTemperature(StrategySettings):
    """Self-consistency with samples spread over ``temperatures`` (e.g. ``[0.2,0.7,1.2]``)."""

    whole_replies: ClassVar[bool] = True

    n: int = Field(default=9, ge=1, le=4096, description="samples in all")
    temperatures: tuple[float, ...] = Field(default=(0.3, 0.7, 1.1), min_length=1)

    @field_validator("temperatures", mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(x for x in value.replace("/", ",").split(",") if x.strip())
        return value

    @field_validator("temperatures")
    @classmethod
    def _in_range(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0.0 <= t <= 2.0 for t in value):
            raise ValueError("every temperature must lie in [0, 2]")
        return value

    async def run(self, problem: Problem, ctx: Context) -> Result:
        """One n-call per temperature, concurrently, then a majority vote over all samples."""
        k = len(self.temperatures)
        shares = [self.n // k + (i < self.n % k) for i in range(k)]
        groups = await asyncio.gather(*(
            ctx.sample(problem, m, temperature=t, max_tokens=self.max_tokens)
            for t, m in zip(self.temperatures, shares, strict=True) if m > 0))
        candidates = [c for g in groups for c in g]
        by_temp = {str(t): [c.answer for c in g]
                   for t, g in zip([t for t, m in zip(self.temperatures, shares, strict=True)
                                    if m > 0], groups, strict=True)}
        return await aggregated_result(problem, candidates, ctx,
                                       answers_by_temperature=by_temp)
