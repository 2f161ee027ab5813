"""First Finish Search (Agarwal et al., 2025): the first sample to complete is the answer.

    launch n independent samples
    wait until one completes with an answer        # shorter traces tend to be right
    cancel the others; return it
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

from pydantic import Field

from testtime.strategies.base import Context, StrategySettings, strategies
from testtime.types import Candidate, Problem, Result


@strategies.register("first-finish")
class FirstFinish(StrategySettings):
    """Race ``n`` samples and keep the first that finishes with an answer."""

    whole_replies: ClassVar[bool] = True

    n: int = Field(default=4, ge=1, le=1024, description="samples raced")

    async def run(self, problem: Problem, ctx: Context) -> Result:
        """Start n single-sample calls, take the first finished one, cancel the rest."""
        pending = {asyncio.ensure_future(ctx.sample(problem, 1, temperature=self.temperature,
                                                    max_tokens=self.max_tokens))
                   for _ in range(self.n)}
        finished: list[Candidate] = []
        winner: Candidate | None = None
        try:
            while pending and winner is None:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    finished += task.result()
                winner = next((c for c in finished if c.has_answer
                               and c.completion.finish_reason != "length"), None)
        finally:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if winner is None and finished:
            winner = finished[0]
        answer = winner.answer if winner else None
        return ctx.result(problem, answer, finished, text=winner.text if winner else None,
                          cancelled=len(pending), launched=self.n)
