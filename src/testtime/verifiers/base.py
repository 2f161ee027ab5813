"""The verifier protocol and registry; a verifier turns candidates into scores in [0, 1]."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, cast, runtime_checkable

from pydantic import BaseModel, ConfigDict

from testtime.backends.base import Backend
from testtime.budget import Ledger
from testtime.registry import Registry, build
from testtime.types import Candidate, Problem, Score


@dataclass
class VerifyContext:
    """What a verifier may use: the policy's backend (a default judge) and the ledger to bill."""

    backend: Backend | None = None
    ledger: Ledger = field(default_factory=Ledger)


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


def make_verifier(spec: str, *, cache: bool = True) -> Verifier:
    """Build a verifier from a spec such as ``confidence`` or ``[judge:k=3]``.

    The verifier is wrapped in a score cache (one per built verifier, i.e. per run), so the
    same candidate of the same problem is never scored twice.
    """
    from testtime.verifiers.cache import CachedVerifier

    spec = spec.strip()
    if len(spec) >= 2 and spec[0] + spec[-1] == "[]":
        spec = spec[1:-1].strip()
    verifier: Verifier = build(verifiers, spec)
    return cast(Verifier, CachedVerifier(verifier, spec)) if cache else verifier
