"""Chains of thought and programs checking each other (CoT + program-of-thought verification).

Two kinds of sample fail in different ways: a chain of thought slips in its arithmetic, a
program computes exactly what it misunderstood. When a reasoning trace and a program reach the
same answer by such different routes, that agreement is stronger evidence than two traces
agreeing (the idea behind combining the two kinds, as in MAmmoTH's hybrid of chain-of-thought
and program-of-thought, Yue et al., 2023). So the vote counts every sample once and adds
``cross`` for each pair of kinds that agree: an answer with ``c`` traces and ``p`` programs
behind it scores ``c + p + cross * min(c, p)``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from pydantic import Field

from testtime.answers import group_answers, normalize
from testtime.strategies.base import Context, strategies
from testtime.strategies.program import ProgramThoughts
from testtime.types import Candidate, Problem, Result


def cross_vote(traces: Sequence[Candidate], programs: Sequence[Candidate], cross: float
               ) -> tuple[str | None, dict[str, float], dict[str, tuple[int, int]]]:
    """The winning answer, each answer's score, and its (traces, programs) counts.

    Ties go to more samples, then to the smallest normalised answer, as in :func:`tally`.
    """
    pool = [*traces, *programs]
    classes = group_answers([c.answer for c in pool])
    counts: dict[int, list[int]] = {}
    reps: dict[int, str] = {}
    for i, (cls, c) in enumerate(zip(classes, pool, strict=True)):
        if cls is None or c.answer is None:
            continue
        counts.setdefault(cls, [0, 0])[int(i >= len(traces))] += 1
        if cls not in reps or normalize(c.answer) < normalize(reps[cls]):
            reps[cls] = c.answer
    scores = {k: t + p + cross * min(t, p) for k, (t, p) in counts.items()}
    order = sorted(scores, key=lambda k: (-scores[k], -sum(counts[k]), normalize(reps[k])))
    votes = {reps[k]: scores[k] for k in order}
    agreement = {reps[k]: (counts[k][0], counts[k][1]) for k in order}
    return (reps[order[0]] if order else None), votes, agreement


@strategies.register("cross-check")
class CrossCheck(ProgramThoughts):
    """Draw ``n`` chains of thought and ``programs`` programs (run in the sandbox), then vote
    across both kinds, an answer both kinds reach weighing ``cross`` more per agreeing pair."""

    n: int = Field(default=4, ge=1, le=4096, description="chains of thought")
    programs: int = Field(default=4, ge=1, le=4096, description="programs")
    cross: float = Field(default=1.0, ge=0.0, le=100.0,
                         description="extra weight per trace–program pair that agree")

    async def run(self, problem: Problem, ctx: Context) -> Result:
        """Sample both kinds at once, run the programs, vote across kinds."""
        traces, programs = await asyncio.gather(
            ctx.sample(problem, self.n, temperature=self.temperature,
                       max_tokens=self.max_tokens, kind=problem.kind),
            self.draw(problem, ctx, self.programs))
        answer, votes, agreement = cross_vote(traces, programs, self.cross)
        return ctx.result(problem, answer, [*traces, *programs], votes=votes,
                          agreement={a: {"traces": t, "programs": p}
                                     for a, (t, p) in agreement.items()},
                          kinds=["trace"] * len(traces) + ["program"] * len(programs))
