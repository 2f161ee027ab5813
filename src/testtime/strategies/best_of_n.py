"""Best-of-N: sample n solutions, score each with a verifier, return the highest scored."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from testtime.strategies.base import Context, StrategySettings, strategies
from testtime.types import Problem, Result
from testtime.verifiers.confidence import ConfidenceVerifier


@strategies.register("best-of-n")
class BestOfN(StrategySettings):
    """Return the candidate the verifier scores highest (ties: the earlier-generated one).

    Candidates with an answer are preferred over ones without, whatever their score.
    """

    uses_verifier: ClassVar[bool] = True
    n: int = Field(default=8, ge=1, le=4096)

    async def run(self, problem: Problem, ctx: Context) -> Result:
        """Sample, score, pick the argmax."""
        ctx.verifier = self.make_verifier(ctx.verifier) or ConfidenceVerifier()
        candidates = await self.draw(problem, ctx, self.n)
        scored = await ctx.score(problem, candidates)
        if not scored:
            return ctx.result(problem, None, scored)
        values = [c.score.value if c.score is not None else 0.0 for c in scored]
        best = max(range(len(scored)), key=lambda i: (scored[i].has_answer, values[i], -i))
        chosen = scored[best]
        return ctx.result(problem, chosen.answer, scored, text=chosen.text, chosen=best)
