"""A weighted combination of verifiers: ``combo:parts=[0.5*confidence|0.5*judge]``."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from pydantic import Field, PrivateAttr

from testtime.registry import SpecError
from testtime.types import Candidate, Problem, Score
from testtime.verifiers.base import Verifier, VerifierSettings, VerifyContext, verifiers
from testtime.verifiers.make import make_verifier


def _split_bars(text: str) -> list[str]:
    parts: list[str] = []
    buf: list[str] = []
    depth = 0
    for ch in text:
        depth += (ch in "[(") - (ch in "])")
        if ch == "|" and depth == 0:
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    if depth:
        raise SpecError(f"unbalanced brackets in combo parts {text!r}")
    return [*parts, "".join(buf)]


def parse_parts(text: str) -> list[tuple[float, str]]:
    """``W*SPEC|W*SPEC|…`` → [(weight, spec)]; a part without ``W*`` weighs 1.

    A part's own options may be bracketed: ``0.3*[confidence:mode=tail,window=64]``.
    """
    parts: list[tuple[float, str]] = []
    for raw in (p.strip() for p in _split_bars(text)):
        if not raw:
            raise SpecError(f"empty part in combo parts {text!r}")
        weight, star, spec = raw.partition("*")
        if not star or "[" in weight or ":" in weight:
            weight, spec = "1", raw
        try:
            w = float(weight)
        except ValueError:
            raise SpecError(f"bad weight {weight!r} in combo part {raw!r}") from None
        if w < 0:
            raise SpecError(f"negative weight in combo part {raw!r}")
        parts.append((w, spec.strip()))
    if sum(w for w, _ in parts) <= 0:
        raise SpecError(f"combo needs a part with a positive weight, got {text!r}")
    return parts


@verifiers.register("combo")
class ComboVerifier(VerifierSettings):
    """Σ wᵢ·scoreᵢ / Σ wᵢ over its parts, each a verifier spec with its own score cache."""

    parts: str = Field(description="W*SPEC|W*SPEC|…, e.g. 0.5*confidence|0.5*judge")
    _built: list[tuple[float, Verifier]] = PrivateAttr(default_factory=list)

    def model_post_init(self, __context: Any) -> None:
        """Parse and build the parts (raises SpecError on a bad part)."""
        self._built = [(w, make_verifier(spec)) for w, spec in parse_parts(self.parts)]

    @property
    def needs_logprobs(self) -> bool:  # type: ignore[override]
        """Whether any part reads the candidates' logprobs."""
        return any(v.needs_logprobs for _, v in self._built)

    @property
    def needs_reference(self) -> bool:  # type: ignore[override]
        """Whether any part needs the reference answer."""
        return any(v.needs_reference for _, v in self._built)

    @property
    def cacheable(self) -> bool:  # type: ignore[override]
        """Cacheable only when every part is."""
        return all(getattr(v, "cacheable", True) for _, v in self._built)

    async def score(self, problem: Problem, candidates: Sequence[Candidate],
                    ctx: VerifyContext) -> list[Score]:
        """Run every part concurrently and mix their scores."""
        results = await asyncio.gather(*(v.score(problem, candidates, ctx)
                                         for _, v in self._built))
        total = sum(w for w, _ in self._built)
        out = []
        for i in range(len(candidates)):
            value = sum(w * r[i].value for (w, _), r in zip(self._built, results, strict=True))
            detail = " + ".join(f"{w:g}×{r[i].value:.3f}"
                                for (w, _), r in zip(self._built, results, strict=True))
            out.append(Score(value=value / total, detail=detail))
        return out
