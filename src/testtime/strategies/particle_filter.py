"""Particle filtering over reasoning steps (Puri et al., 2025), with entropic annealing (ePF).

    sample N first steps: the particles
    repeat until every particle has finished or max_depth:
        w := softmax(process reward of each particle / temperature)
        ePF: if entropy(w) / log N < entropy_floor, temper w towards uniform until it is not
        particles := N draws from the particles with probabilities w     # resampling
        extend each unfinished particle by one step      # one n=copies call per distinct node
    return the answer by (reward-weighted) vote over the final particles
"""

from __future__ import annotations

from collections import Counter
from typing import Literal

from pydantic import Field

from testtime.strategies.base import Context, strategies
from testtime.strategies.resampling import anneal, normalized_entropy, resample, softmax
from testtime.strategies.stepping import SearchSettings
from testtime.strategies.tree import Node, SearchTree
from testtime.types import Problem, Result


@strategies.register("particle-filter")
class ParticleFilter(SearchSettings):
    """Sequential Monte Carlo over partial solutions weighted by the process reward."""

    n: int = Field(default=8, ge=1, le=4096, description="particles")
    softmax_temperature: float = Field(default=0.1, gt=0.0, le=100.0,
                                       description="temperature of the reward softmax")
    entropic: bool = Field(default=False, description="anneal when diversity drops (ePF)")
    entropy_floor: float = Field(default=0.5, ge=0.0, le=1.0,
                                 description="normalised entropy ePF keeps the weights above")
    select: Literal["score", "vote", "weighted"] = "weighted"

    async def run(self, problem: Problem, ctx: Context) -> Result:
        """Extend, weigh, resample, until all particles have finished."""
        tree = self.start(problem)
        particles = await self.expand(ctx, problem, tree, [tree.root], [self.n])
        history: list[dict[str, float]] = []
        while particles:
            weights, beta = self.weigh(particles)
            history.append({"entropy": round(normalized_entropy(weights), 4),
                            "beta": round(beta, 4), "alive": sum(not p.terminal
                                                                 for p in particles)})
            if all(p.terminal for p in particles) or ctx.exhausted:
                break
            particles = [particles[i] for i in resample(weights, self.n, ctx.rng)]
            particles = await self.extend(ctx, problem, tree, particles)
        return self.finish(problem, ctx, tree, particles, steps=history,
                           distinct_paths=len({p.id for p in particles}),
                           distinct_first_steps=len({p.first_step().step for p in particles}))

    def weigh(self, particles: list[Node]) -> tuple[list[float], float]:
        """Resampling weights of the particles and the annealing exponent used (1: none)."""
        rewards = [p.value for p in particles]
        if self.entropic:
            return anneal(rewards, self.softmax_temperature, self.entropy_floor)
        return softmax(rewards, self.softmax_temperature), 1.0

    async def extend(self, ctx: Context, problem: Problem, tree: SearchTree,
                     particles: list[Node]) -> list[Node]:
        """Give every unfinished particle one more step; particles with the same text (copies
        made by resampling, or equal steps) share one ``n=copies`` call."""
        copies = Counter(p.prompt.prefix for p in particles if not p.terminal)
        first = {p.prompt.prefix: p for p in reversed(particles) if not p.terminal}
        children = await self.expand(ctx, problem, tree, [first[k] for k in copies],
                                     list(copies.values()))
        by_state: dict[str, list[Node]] = {}
        for child in children:
            assert child.parent is not None
            by_state.setdefault(child.parent.prompt.prefix, []).append(child)
        out: list[Node] = []
        for p in particles:
            if p.terminal:
                out.append(p)
            elif by_state.get(p.prompt.prefix):
                out.append(by_state[p.prompt.prefix].pop(0))
        return out
