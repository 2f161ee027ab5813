"""First Finish Search (Agarwal et al., 2025): the first sample to complete is the answer.

    launch n independent samples
    wait until one completes with an answer        # shorter traces tend to be right
    cancel the others; return it

With ``samples=SPEC`` the racers are what SPEC's strategy draws: a trace that pauses to run
code finishes when its last step does, and a cancelled one is billed what it had generated
and run.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

from pydantic import Field

from testtime.strategies.base import Context, strategies
from testtime.strategies.samples import SamplesOption
from testtime.types import Candidate, Problem, Result


@strategies.register("first-finish")
class FirstFinish(SamplesOption):
    """Race ``n`` samples (what ``samples=SPEC`` draws, where given) and keep the first that
    finishes with an answer."""

    whole_replies: ClassVar[bool] = True

    n: int = Field(default=4, ge=1, le=1024, description="samples raced")

    async def run(self, problem: Problem, ctx: Context) -> Result:
        """Start n single samples, take the first finished one, cancel the rest."""
        pending = {asyncio.ensure_future(self.draw(problem, ctx, 1)) for _ in range(self.n)}
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
