"""Feynman–Kac steering: SMC over partial denoisings, resampled by intermediate rewards
(Singhal et al., 2025; Wu et al.'s twisted SMC in the same family).

    sample K particles x_T ~ N(0, I)
    for each step t (stochastic: η > 0, so copies diverge after resampling):
        x_{t−1} ~ p(x_{t−1} | x_t)
        every `every` steps: r_i = V(x̂₀(x_{t−1}))       (reward of the x₀ estimate)
            potential G_i = exp(λ · (r_i − r_i^prev))  ("difference")  or exp(λ · r_i) ("max")
            resample the particles ∝ G_i (systematic) when the ESS falls below K · ess
    return the particle with the highest final reward
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field

from testtime.diffusion.base import searches
from testtime.diffusion.context import DiffusionContext
from testtime.diffusion.searches.base import Search, fill


def systematic(weights: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Systematic resampling: indices drawn ∝ ``weights`` with one uniform offset."""
    k = len(weights)
    cdf = torch.cumsum(weights / weights.sum(), 0)
    u = (torch.rand(1, generator=generator) + torch.arange(k)) / k
    return torch.searchsorted(cdf, u).clamp(max=k - 1)


@searches.register("smc")
class FKSteering(Search):
    """K particles steered by the verifier's rewards on x₀ estimates; K unset: fill budget."""

    particles: int | None = Field(default=None, ge=1, le=4096, description="K")
    every: int = Field(default=2, ge=1, description="steps between resamplings")
    lam: float = Field(default=10.0, gt=0.0, description="λ: reward temperature")
    potential: Literal["difference", "max"] = "difference"
    ess: float = Field(default=1.0, gt=0.0, le=1.0, description="resample below ESS/K")
    eta: float = Field(default=1.0, gt=0.0, le=1.0, description="the sampler's η (> 0)")

    def search(self, ctx: DiffusionContext) -> dict[str, Any] | None:
        """Propagate, weight by reward gain, resample; the best final particle wins."""
        k = fill(self.particles, ctx.affordable(self.steps))
        grid = ctx.sampler.grid(self.steps)
        x = ctx.noise(k)
        prev = torch.zeros(k)
        resampled = 0
        for i in range(self.steps):
            x, x0 = ctx.step(x, grid[i], grid[i + 1], eta=self.eta)
            last = i == self.steps - 1
            if last or (i + 1) % self.every:
                continue
            reward = ctx.score(x0, final=False)
            gain = reward - prev if self.potential == "difference" else reward
            w = torch.softmax(self.lam * gain, 0)
            if 1.0 / float((w ** 2).sum()) < self.ess * k:
                idx = systematic(w, ctx.generator)
                x, reward = x[idx], reward[idx]
                resampled += 1
            prev = reward
        ctx.score(x)
        return {"particles": k, "resamplings": resampled}
