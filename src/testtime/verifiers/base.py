"""The verifier protocol and registry; a verifier turns candidates into scores in [0, 1]."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from testtime.backends.base import Backend
from testtime.budget import CostModel, Ledger
from testtime.metered import metered_generate
from testtime.registry import Registry
from testtime.types import Candidate, Generation, GenerationRequest, Problem, Score


@dataclass
class ForwardPass:
    """A reward-model pass being billed; the verifier may correct its counts before it ends."""

    tokens: int
    flops: float | None
    counted_by: str


@dataclass
class VerifyContext:
    """What a verifier may use: the policy's backend (a default judge) and the ledger to bill.

    Verifiers spend only through it: ``generate`` for a judge's calls and ``forward`` for a
    reward model's passes, both planned against the problem's Budget before they run and
    recorded as verifier usage after.
    """

    backend: Backend | None = None
    ledger: Ledger = field(default_factory=Ledger)

    async def generate(self, backend: Backend, req: GenerationRequest) -> Generation:
        """One judge call on ``backend``, planned and billed as verifier work.

        Returns an empty Generation when the budget cannot afford even a shrunk call.
        """
        return await metered_generate(self.ledger, backend, req, verifier=True)

    @contextmanager
    def forward(self, tokens: int, flops: float | None,
                counted_by: str = "tokenizer") -> Iterator[ForwardPass]:
        """Plan, time and record one reward-model forward pass over ``tokens`` inputs.

        Raises BudgetExhausted before the pass when the budget cannot afford it. ``flops``
        None means the model's FLOPs are unknown (then a ``flops`` limit refuses the pass).
        A verifier that learns the exact counts later (a server's reply) sets them on the
        yielded ForwardPass.
        """
        plan = self.ledger.plan(1, 0, tokens, verifier=True, cost=CostModel(), flops=flops)
        done = ForwardPass(tokens, flops, counted_by)
        started = time.monotonic()
        try:
            yield done
        except BaseException:
            self.ledger.settle(plan)
            raise
        self.ledger.record_pass(plan, done.tokens, time.monotonic() - started, done.flops,
                                done.counted_by)


@runtime_checkable
class Verifier(Protocol):
    """Scores candidate solutions of a problem."""

    needs_logprobs: ClassVar[bool]
    needs_reference: ClassVar[bool]

    async def score(self, problem: Problem, candidates: Sequence[Candidate],
                    ctx: VerifyContext) -> list[Score]:
        """One Score per candidate, in order."""
        ...


class UnfitProblem(ValueError):
    """A verifier asked to score a problem it cannot score (no reference, not code, ...)."""


class VerifierSettings(BaseModel):
    """Base for verifiers: validated, immutable options.

    ``problem_kinds`` lists the problem kinds the verifier can score (empty: any).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    needs_logprobs: ClassVar[bool] = False
    needs_reference: ClassVar[bool] = False
    cacheable: ClassVar[bool] = True
    problem_kinds: ClassVar[tuple[str, ...]] = ()


verifiers: Registry[Any] = Registry("verifier")
