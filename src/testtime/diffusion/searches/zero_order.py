"""Zero-order search around a pivot noise (Ma et al., 2025, §3.1).

    z ← a random noise;  score V(Φ(z))
    repeat:
        sample N neighbours z'_i = √(1 − λ²)·z + λ·ε_i      (stays on N(0, I)'s shell)
        if max_i V(Φ(z'_i)) > V(Φ(z)): z ← the best neighbour
    until the budget is spent

The search needs the map noise → sample to be a function, so it denoises with η = 0 (the
scheduler's ODE) unless told otherwise.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from pydantic import Field

from testtime.diffusion.base import searches
from testtime.diffusion.context import DiffusionContext
from testtime.diffusion.searches.base import Search


@searches.register("zero-order")
class ZeroOrder(Search):
    """Hill-climb in noise space from a pivot, N neighbours at radius λ per round."""

    n: int = Field(default=4, ge=1, le=1024, description="neighbours per round")
    radius: float = Field(default=0.5, gt=0.0, lt=1.0, description="λ: how far a neighbour is")
    rounds: int | None = Field(default=None, ge=1, description="rounds (unset: until spent)")
    eta: float = Field(default=0.0, ge=0.0, le=1.0, description="the sampler's η")

    def search(self, ctx: DiffusionContext) -> dict[str, Any] | None:
        """Score the pivot, then move to the best neighbour while one improves on it."""
        grid = ctx.sampler.grid(self.steps)
        pivot = ctx.noise(1)
        x, _ = ctx.denoise(pivot, grid, eta=self.eta)
        best = float(ctx.score(x)[0])
        moves, done = 0, 0
        while self.rounds is None or done < self.rounds:
            afford = ctx.affordable(self.steps)
            n = self.n if afford is None else min(self.n, afford)
            if n < 1:
                break
            eps = ctx.noise(n)
            near = math.sqrt(1.0 - self.radius ** 2) * pivot + self.radius * eps
            x, _ = ctx.denoise(near, grid, eta=self.eta)
            scores = ctx.score(x)
            i = int(torch.argmax(scores))
            if float(scores[i]) > best:
                pivot, best, moves = near[i:i + 1], float(scores[i]), moves + 1
            done += 1
        return {"rounds": done, "moves": moves}
