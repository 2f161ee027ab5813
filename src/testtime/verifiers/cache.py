"""A per-run score cache, so the same candidate is never scored twice by the same verifier."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from testtime.types import Candidate, Problem, Score
from testtime.verifiers.base import Verifier, VerifyContext

KEPT_SCORES = 4096


class CachedVerifier:
    """Wraps a verifier; scores are kept per (problem id, candidate text, spec, judge backend).

    Verifiers whose score of one candidate depends on the others (``cacheable = False``, e.g.
    listwise selection) are passed through. Attributes not defined here come from the wrapped
    verifier, so the wrapper can stand wherever the verifier did. The newest ``KEPT_SCORES``
    scores are kept (least recently used go first), so a verifier that lives as long as a
    server does not grow with every request it scores.
    """

    def __init__(self, inner: Verifier, spec: str) -> None:
        self.inner = inner
        self.spec = spec
        self.needs_logprobs = bool(getattr(inner, "needs_logprobs", False))
        self.needs_reference = bool(getattr(inner, "needs_reference", False))
        self.cacheable = bool(getattr(inner, "cacheable", True))
        self.hits = 0
        self.misses = 0
        self._scores: OrderedDict[tuple[str, str, str, int], Score] = OrderedDict()
        self._lock = asyncio.Lock()

    def __getattr__(self, name: str) -> Any:
        if "inner" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.__dict__["inner"], name)

    def _key(self, problem: Problem, c: Candidate, ctx: VerifyContext) -> tuple[str, str, str, int]:
        return (problem.id, c.text, self.spec, id(ctx.backend))

    async def score(self, problem: Problem, candidates: Sequence[Candidate],
                    ctx: VerifyContext) -> list[Score]:
        """Score only the candidates not seen before; reuse earlier scores for the rest."""
        if not self.cacheable:
            return await self.inner.score(problem, candidates, ctx)
        keys = [self._key(problem, c, ctx) for c in candidates]
        found = {k: self._scores[k] for k in keys if k in self._scores}
        todo: dict[tuple[str, str, str, int], Candidate] = {}
        for k, c in zip(keys, candidates, strict=True):
            if k not in found and k not in todo:
                todo[k] = c
        self.misses += len(todo)
        self.hits += len(candidates) - len(todo)
        if todo:
            fresh = await self.inner.score(problem, list(todo.values()), ctx)
            if len(fresh) != len(todo):
                raise ValueError(f"verifier {self.spec!r} returned {len(fresh)} scores "
                                 f"for {len(todo)} candidates")
            new = dict(zip(todo, fresh, strict=True))
            if not ctx.ledger.exhausted:  # scores made short of budget are not its best
                self._scores.update(new)
            found.update(new)
        for k in keys:
            if k in self._scores:
                self._scores.move_to_end(k)
        while len(self._scores) > KEPT_SCORES:
            self._scores.popitem(last=False)
        return [found[k] for k in keys]
        fresh = await self.inner.score(problem, list(todo.values()), ctx)
        if len(fresh) != len(todo):
            raise ValueError(f"verifier {self.spec!r} returned {len(fresh)} scores "
                             f"for {len(todo)} candidates")
        new = dict(zip(todo, fresh, strict=True))
        if not ctx.ledger.exhausted:  # scores made short of budget are not the verifier's best
            self._scores.update(new)
        found.update(new)
        for k in found:
            self._scores.move_to_end(k) if k in self._scores else None
        while len(self._scores) > KEPT_SCORES:
            self._scores.popitem(last=False)
        return [found[k] for k in keys]
