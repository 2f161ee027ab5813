"""Runs each candidate's code against the problem's tests in the sandbox."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from testtime.code.problems import run_candidate
from testtime.code.sandbox import RunResult
from testtime.code.settings import MemoryMb, SandboxOptions, WallSeconds
from testtime.registry import OPERATOR
from testtime.types import Candidate, Problem, Score, Usage
from testtime.verifiers.base import VerifierSettings, VerifyContext, verifiers


class SandboxedVerifier(SandboxOptions, VerifierSettings):
    """Base of the verifiers that run candidates' code: the sandbox's options, set by the
    operator only, and one place that runs every candidate and bills the sandbox's time."""

    problem_kinds: ClassVar[tuple[str, ...]] = ("code",)

    timeout: WallSeconds = 10.0
    memory_mb: MemoryMb = 1024
    parallel: Annotated[int, OPERATOR] = Field(default=0, ge=0, le=256,
                                               description="runs at once; 0: CPU count")

    async def run_all(self, candidates: Sequence[Candidate], run: Callable[[Candidate], RunResult],
                      ctx: VerifyContext) -> list[RunResult]:
        """``run`` every candidate (a few at once, off the event loop); bill the sandbox time."""
        gate = asyncio.Semaphore(self.parallel or os.cpu_count() or 1)

        async def one(c: Candidate) -> RunResult:
            async with gate:
                return await asyncio.to_thread(run, c)

        runs = await asyncio.gather(*(one(c) for c in candidates))
        seconds = sum(r.seconds for r in runs)
        ctx.ledger.add(Usage(verifier_calls=len(runs), verifier_seconds=seconds,
                             sandbox_runs=len(runs), sandbox_seconds=seconds,
                             counted_by=("sandbox",)))
        return runs


@verifiers.register("tests")
class TestsVerifier(SandboxedVerifier):
    """The fraction of the problem's tests a candidate passes; 0 when its code does not load.

    ``source=hidden`` runs the problem's own tests, the ones grading uses: right when a user
    has a test suite, and then best-of-n reaches pass@n. ``source=examples`` runs only the
    ``>>>`` examples of the prompt's docstring, what a user without a suite can see.
    Bills no tokens: one verifier call per candidate and the sandbox's seconds.
    """

    source: Annotated[Literal["hidden", "examples"], OPERATOR] = Field(
        default="hidden", description="the problem's tests, or its docstring examples")

    async def score(self, problem: Problem, candidates: Sequence[Candidate],
                    ctx: VerifyContext) -> list[Score]:
        """Run every candidate against the tests and score its pass rate."""
        runs = await self.run_all(candidates, lambda c: run_candidate(
            problem, c.text, self.limits, self.sandbox, examples=self.source == "examples"), ctx)
        return [Score(value=r.fraction, detail=_detail(r)) for r in runs]


def _detail(run: RunResult) -> str:
    passed = f"{sum(run.passed)}/{len(run.passed)} tests" if run.loaded else "did not load"
    first = next(iter(run.errors.values()), "")
    return (f"{passed}, {run.status}, {run.seconds:.2f}s, {run.mode} box, {run.verdict} verdict"
            + (f"; {first}" if first else ""))
