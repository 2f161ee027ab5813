"""Shared helpers of generative verifiers: the judge's backend, billing and verdict parsing."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping

from testtime.backends.base import Backend, make_backend
from testtime.types import Generation, GenerationRequest
from testtime.verifiers.base import VerifyContext

_WORD = re.compile(r"[A-Za-z0-9]+")
_VERDICT = re.compile(r"verdict\W*(yes|no)\b", re.IGNORECASE)


class JudgeError(ValueError):
    """A generative verifier that has no model to ask or got an unusable answer."""


class JudgeBackend:
    """The judge's model: its own backend spec when given (built once), else the policy's."""

    def __init__(self, spec: str | None) -> None:
        self.spec = spec
        self._backend: Backend | None = make_backend(spec) if spec else None

    def get(self, ctx: VerifyContext) -> Backend:
        """The backend to ask."""
        backend = self._backend or ctx.backend
        if backend is None:
            raise JudgeError("this verifier needs a model: give backend=SPEC or run it inside a "
                             "strategy whose backend can serve as judge")
        return backend

    async def ask(self, ctx: VerifyContext, req: GenerationRequest) -> Generation:
        """One judge call, billed to the ledger as verifier tokens."""
        gen = await self.get(ctx).generate(req)
        ctx.ledger.record(gen, verifier=True)
        return gen


def first_word(text: str) -> str:
    """The first alphanumeric word of ``text``, lower-cased ('' when there is none)."""
    m = _WORD.search(text)
    return m.group(0).lower() if m else ""


def verdict(text: str) -> str:
    """The last ``Verdict: Yes/No`` of a judge's working, lower-cased ('' when there is none)."""
    found = _VERDICT.findall(text)
    return found[-1].lower() if found else ""


def label_mass(top: Mapping[str, float], labels: Iterable[str]) -> dict[str, float]:
    """Probability mass per label among a token's top alternatives (case, spaces ignored)."""
    wanted = {label.lower(): label for label in labels}
    mass = dict.fromkeys(wanted.values(), 0.0)
    for token, logprob in top.items():
        label = wanted.get(token.strip().lower())
        if label is not None:
            mass[label] += math.exp(logprob)
    return mass
