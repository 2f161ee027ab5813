"""Shared helpers of generative verifiers: the judge's backend, billing and verdict parsing."""

from __future__ import annotations

import asyncio
import math
import re
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Mapping

from testtime.backends.base import Backend, backend_settings, make_backend
from testtime.types import Generation, GenerationRequest
from testtime.verifiers.base import VerifyContext

_WORD = re.compile(r"[A-Za-z0-9]+")
_VERDICT = re.compile(r"verdict\W*(yes|no)\b", re.IGNORECASE)


class JudgeError(ValueError):
    """A generative verifier that has no model to ask or got an unusable answer."""


KEPT_JUDGES = 16
_SHARED: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, OrderedDict[str, Backend]] = (
    weakref.WeakKeyDictionary())


def shared_backend(spec: str) -> Backend:
    """The one backend for ``spec`` in the running event loop, built on first use.

    Every verifier that names the same judge shares it, so a sweep that builds a verifier
    per unit still loads the judge's model once. At most ``KEPT_JUDGES`` are kept per loop
    (least recently used go first; whoever still holds one keeps it working). Judge specs
    come from operators only, which the spec parser's client mode enforces.
    """
    built = _SHARED.setdefault(asyncio.get_running_loop(), OrderedDict())
    if spec not in built:
        built[spec] = make_backend(spec)
        while len(built) > KEPT_JUDGES:
            built.popitem(last=False)
    built.move_to_end(spec)
    return built[spec]


class JudgeBackend:
    """The judge's model: the backend its own spec names (shared), else the policy's."""

    def __init__(self, spec: str | None) -> None:
        self.spec = spec
        if spec:
            backend_settings(spec)

    def get(self, ctx: VerifyContext) -> Backend:
        """The backend to ask (call it inside the event loop that will use it)."""
        backend = shared_backend(self.spec) if self.spec else ctx.backend
        if backend is None:
            raise JudgeError("this verifier needs a model: give backend=SPEC or run it inside a "
                             "strategy whose backend can serve as judge")
        return backend

    async def ask(self, ctx: VerifyContext, req: GenerationRequest) -> Generation:
        """One judge call, planned against the budget and billed as verifier work.

        An unaffordable call comes back empty (no verdict); the ledger names the limit.
        """
        return await ctx.generate(self.get(ctx), req)


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
