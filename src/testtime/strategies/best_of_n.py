"""Best-of-N: sample n solutions, score each with a verifier, return the highest scored."""

from __future__ import annotations

from typing import ClassVar

from testtime.policy.pools import Pool
from testtime.strategies.base import Context, strategies
from testtime.strategies.scored import ScoredSamples
from testtime.types import Problem, Result


@strategies.register("best-of-n")
class BestOfN(ScoredSamples):
    """Return the candidate the verifier scores highest (ties: the earlier-generated one).

    Candidates with an answer are preferred over ones without, whatever their score.
    """

    pool: ClassVar[Pool | None] = Pool("best-of")

    async def run(self, problem: Problem, ctx: Context) -> Result:
        """Sample, score, pick the argmax."""
        scored = await self.scored(problem, ctx)
        if not scored:
            return ctx.result(problem, None, scored)
        values = [c.score.value if c.score is not None else 0.0 for c in scored]
        best = max(range(len(scored)), key=lambda i: (scored[i].has_answer, values[i], -i))
        chosen = scored[best]
        return ctx.result(problem, chosen.answer, scored, text=chosen.text, chosen=best)
