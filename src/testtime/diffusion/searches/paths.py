"""Search over paths: re-noise partly denoised states and continue (Ma et al., 2025, §3.1).

    sample N noises; denoise them to the level at step `start`
    repeat until clean:
        each of the N states spawns M copies re-noised `back` steps (forward process)
        denoise every copy `ahead` steps (ahead > back: the path advances ahead − back)
        score each copy's x₀ estimate with the verifier; keep the N best
    return the best clean sample
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

from testtime.diffusion.base import DiffusionError, searches
from testtime.diffusion.context import DiffusionContext
from testtime.diffusion.searches.base import Search


@searches.register("paths")
class PathSearch(Search):
    """Beam search over denoising paths with N beams, M branches each; M unset: fill budget."""

    n: int = Field(default=2, ge=1, le=256, description="N: paths kept")
    m: int | None = Field(default=None, ge=1, le=256, description="M: branches per path")
    start: float = Field(default=0.5, gt=0.0, lt=1.0, description="fraction of the steps "
                         "denoised before the first branching")
    back: int = Field(default=1, ge=1, description="steps each branch is re-noised back")
    ahead: int = Field(default=2, ge=2, description="steps each branch is denoised forward")

    def plan(self, steps: int) -> tuple[int, int]:
        """(first branching step, rounds until clean)."""
        if self.ahead <= self.back:
            raise DiffusionError(f"paths needs ahead > back, got ahead={self.ahead}, "
                                 f"back={self.back}")
        first = max(round(self.start * steps), self.back)
        advance = self.ahead - self.back
        return first, -(-(steps - first) // advance)

    def search(self, ctx: DiffusionContext) -> dict[str, Any] | None:
        """Branch, denoise, prune to the verifier's N best, until the paths are clean."""
        grid = ctx.sampler.grid(self.steps)
        first, rounds = self.plan(self.steps)
        per_branch = sum(min(self.ahead, self.steps - (first + r * (self.ahead - self.back)
                                                       - self.back)) for r in range(rounds))
        n = self.n
        left = ctx.nfes_left()
        passes = ctx.sampler.passes()
        if left is not None:
            n = max(min(n, left // (self.steps * passes)), 1)
        m = self.m
        if m is None:
            m = 1 if left is None else max((left // passes - n * first) // max(n * per_branch, 1),
                                           1)
        if m <= 1 or rounds == 0:
            x, _ = ctx.denoise(ctx.noise(n), grid)
            ctx.score(x)
            return {"n": n, "m": 1}
        x, _ = ctx.denoise(ctx.noise(n), grid, 0, first)
        at = first
        for _ in range(rounds):
            back_to = at - self.back
            to = min(back_to + self.ahead, self.steps)
            branches = ctx.renoise(x.repeat_interleave(m, 0), grid[at], grid[back_to])
            branches, x0 = ctx.denoise(branches, grid, back_to, to)
            scores = ctx.score(x0, final=to == self.steps)
            keep = torch.topk(scores, min(n, len(scores))).indices
            x, at = branches[keep], to
        return {"n": n, "m": m, "rounds": rounds}
