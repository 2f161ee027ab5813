"""What every search shares: its settings base, the run wrapper and the spec parser."""

from __future__ import annotations

import contextlib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from testtime.budget import BudgetExhausted
from testtime.diffusion.base import DiffusionResult, searches
from testtime.diffusion.context import DiffusionContext
from testtime.registry import build


class Search(BaseModel):
    """A search over a diffusion model's samples; ``steps`` is one denoising's length."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    steps: int = Field(default=10, ge=1, le=1000, description="denoising steps per sample")

    def run(self, ctx: DiffusionContext) -> DiffusionResult:
        """Check the budget holds one denoising, search until done or spent, return the best."""
        ctx.require(self.steps)
        extra: dict[str, Any] = {}
        with contextlib.suppress(BudgetExhausted):
            extra = self.search(ctx) or {}
        return ctx.result(self.spec(), **extra)

    def search(self, ctx: DiffusionContext) -> dict[str, Any] | None:
        """The algorithm itself; scores candidates with ``ctx.score`` so the best is kept."""
        raise NotImplementedError

    def spec(self) -> str:
        """The search as a spec string (options that differ from their defaults)."""
        name = getattr(type(self), "registered_name", type(self).__name__)
        opts = [f"{k}={v}" for k, v in self.model_dump(exclude_defaults=True).items()]
        return f"{name}:{','.join(opts)}" if opts else name


def fill(n: int | None, affordable: int | None) -> int:
    """``n`` samples, or as many as the budget affords; at least one."""
    if n is None:
        return max(affordable or 1, 1)
    return max(min(n, affordable), 1) if affordable is not None else n


def make_search(spec: str) -> Search:
    """A search from a spec such as ``random-search:n=8,steps=10``."""
    return build(searches, spec)
