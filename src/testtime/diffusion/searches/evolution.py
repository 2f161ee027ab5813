"""Evolutionary search over initial noises (EvoSearch, He et al., 2025).

    population P₀ of noises; fitness f = V(Φ(z))
    each generation:
        keep the `elite` fittest
        pick parents by tournament, never the same parent twice in a row (diversity)
        children z' = √(1 − β²)·z_parent + β·ε    (Gaussian-preserving mutation)
    until the budget is spent; return the fittest sample ever seen

As in zero-order search, Φ is the scheduler's ODE (η = 0) so a noise has one fitness.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from pydantic import Field

from testtime.diffusion.base import searches
from testtime.diffusion.context import DiffusionContext
from testtime.diffusion.searches.base import Search


@searches.register("evolution")
class Evolution(Search):
    """Selection, elitism and Gaussian mutation of noises; generations unset: fill budget."""

    population: int = Field(default=4, ge=2, le=1024)
    elite: int = Field(default=1, ge=0)
    mutation: float = Field(default=0.4, gt=0.0, lt=1.0, description="β: mutation strength")
    tournament: int = Field(default=2, ge=1)
    generations: int | None = Field(default=None, ge=1)
    eta: float = Field(default=0.0, ge=0.0, le=1.0, description="the sampler's η")

    def search(self, ctx: DiffusionContext) -> dict[str, Any] | None:
        """Evaluate a population, then breed mutated children of tournament winners."""
        grid = ctx.sampler.grid(self.steps)
        afford = ctx.affordable(self.steps)
        size = self.population if afford is None else max(min(self.population, afford), 1)
        pop = ctx.noise(size)
        x, _ = ctx.denoise(pop, grid, eta=self.eta)
        fit = ctx.score(x)
        elite = min(self.elite, size - 1)
        gen = 0
        while self.generations is None or gen < self.generations:
            afford = ctx.affordable(self.steps)
            room = size - elite if afford is None else min(size - elite, afford)
            if room < 1:
                break
            order = torch.argsort(fit, descending=True)
            parents = self.select(fit, room, ctx.generator)
            beta = self.mutation
            kids = math.sqrt(1.0 - beta ** 2) * pop[parents] + beta * ctx.noise(room)
            x, _ = ctx.denoise(kids, grid, eta=self.eta)
            kid_fit = ctx.score(x)
            keep = order[:elite]
            pop = torch.cat([pop[keep], kids])
            fit = torch.cat([fit[keep], kid_fit])
            gen += 1
        return {"population": size, "generations": gen}

    def select(self, fit: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` tournament winners, no parent chosen twice in a row."""
        chosen: list[int] = []
        for _ in range(n):
            for _ in range(8):
                entrants = torch.randint(0, len(fit), (self.tournament,), generator=generator)
                winner = int(entrants[torch.argmax(fit[entrants])])
                if not chosen or winner != chosen[-1] or len(fit) == 1:
                    break
            chosen.append(winner)
        return torch.tensor(chosen, dtype=torch.long)
