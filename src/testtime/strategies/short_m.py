"""short-m@k (Hassid et al., 2025, "Don't Overthink It"): vote among the first m to finish.

    start k traces at once                          # decoded in lockstep, token for token
    as each trace finishes with an answer: it is one of the m
    once m have finished: stop every other trace    # shorter chains tend to be right
    answer := majority vote over the m; a tie goes to the answer of the shortest trace

With m = 1 this is First Finish Search by tokens rather than wall-clock. The stopped traces are
billed the tokens they had generated, so short-m@k spends about k times the m-th shortest
trace's length, not the sum of all k lengths.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, model_validator

from testtime.answers import equivalent
from testtime.strategies.base import Context, StrategySettings, strategies
from testtime.strategies.voting import tally
from testtime.traces import Trace
from testtime.types import Candidate, Completion, Piece, Problem, Result


def shortest_majority(finishers: list[Candidate]) -> tuple[str | None, Candidate | None]:
    """The majority answer of ``finishers`` (in finishing order), ties going to the earliest,
    and the earliest finisher that gave it."""
    rows = tally(finishers)
    if not rows:
        return None, None
    best = [r[0] for r in rows if (r[1], r[2]) == (rows[0][1], rows[0][2])]
    for c in finishers:
        for answer in best:
            if equivalent(c.answer, answer):
                return answer, c
    return best[0], None


@strategies.register("short-m")
class ShortM(StrategySettings):
    """Start ``n`` traces; once ``m`` have finished with an answer, stop the rest and vote."""

    whole_replies: ClassVar[bool] = True

    n: int = Field(default=8, ge=1, le=4096, description="traces started (the paper's k)")
    m: int = Field(default=3, ge=1, le=4096,
                   description="finished traces that end the race and vote (1: first finish)")

    @model_validator(mode="after")
    def _fits(self) -> ShortM:
        if self.m > self.n:
            raise ValueError("m must not exceed n")
        return self

    async def run(self, problem: Problem, ctx: Context) -> Result:
        """Race the traces token for token; the first ``m`` answers vote."""
        prompt = problem.prompt()
        running: dict[int, Trace] = {}
        finishers: list[Candidate] = []

        def watch(trace: Trace, piece: Piece) -> None:
            running[trace.index] = trace
            if len(finishers) >= self.m:
                trace.stop()

        def finished(trace: Trace, completion: Completion) -> None:
            running.pop(trace.index, None)
            candidate = ctx.candidate(prompt, completion, problem.kind)
            if (len(finishers) < self.m and candidate.has_answer
                    and completion.finish_reason != "length"):
                finishers.append(candidate)
                if len(finishers) == self.m:
                    for other in running.values():
                        other.stop()

        traces = await ctx.traces(problem, self.n, watch=watch, on_finish=finished,
                                  temperature=self.temperature, max_tokens=self.max_tokens)
        seen = [t.candidate for t in traces if t.candidate is not None]
        voters = finishers or [c for c in seen if c.completion.finish_reason != "stopped"]
        answer, winner = shortest_majority(voters)
        return ctx.result(problem, answer, seen, text=winner.text if winner else None,
                          votes={a: w for a, w, _ in tally(voters)},
                          finished=len(finishers), traces=len(seen),
                          stopped=sum(c.completion.finish_reason == "stopped" for c in seen))
