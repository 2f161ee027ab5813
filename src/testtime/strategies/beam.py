"""Step-level beam search guided by a process verifier (Snell et al., 2024; search-and-learn).

    sample N first steps
    repeat until N solutions are finished or max_depth:
        finished += children that end their solution
        beams := the N/M best unfinished children (by the verifier's path value)
        children := M next steps of every beam            # one n=M call per beam, concurrent
        (lookahead k: a child's value is the value of its greedy k-step rollout)
    return the best finished solution
"""

from __future__ import annotations

import asyncio

from pydantic import Field, model_validator

from testtime.strategies.base import Context, strategies
from testtime.strategies.stepping import SearchSettings, top
from testtime.strategies.tree import Node, SearchTree
from testtime.types import Problem, Result


@strategies.register("beam")
class BeamSearch(SearchSettings):
    """Keep the N/M best partial solutions at every step and expand each into M children."""

    n: int = Field(default=8, ge=1, le=4096, description="solutions alive per step (N)")
    width: int = Field(default=4, ge=1, le=4096, description="children per beam (M)")
    lookahead: int = Field(default=0, ge=0, le=32, description="greedy steps to roll out")

    @model_validator(mode="after")
    def _width_divides(self) -> BeamSearch:
        if self.width > self.n:
            raise ValueError(f"width ({self.width}) must not exceed n ({self.n})")
        return self

    async def run(self, problem: Problem, ctx: Context) -> Result:
        """Expand, score, keep the best N/M, until N solutions finish."""
        tree = self.start(problem)
        keep = max(self.n // self.width, 1)
        finished: list[Node] = []
        children = await self.expand(ctx, problem, tree, [tree.root], [self.n])
        alive: list[Node] = []
        while children:
            if self.lookahead:
                await self.look_ahead(ctx, problem, tree, children)
            finished += [c for c in children if c.terminal]
            alive = top([c for c in children if not c.terminal], keep)
            tree.mark(alive, "kept")
            if len(finished) >= self.n or not alive or ctx.exhausted:
                break
            children = await self.expand(ctx, problem, tree, alive, [self.width] * len(alive))
        return self.finish(problem, ctx, tree, finished or alive, lookahead=self.lookahead)

    async def look_ahead(self, ctx: Context, problem: Problem, tree: SearchTree,
                         children: list[Node]) -> None:
        """Give each unfinished child the value of its greedy ``lookahead``-step rollout."""
        async def roll(child: Node) -> None:
            node = child
            for _ in range(self.lookahead):
                if node.terminal or ctx.exhausted:
                    break
                nxt = await self.expand(ctx, problem, tree, [node], [1], temperature=0.0)
                if not nxt:
                    break
                node = nxt[0]
                node.tags.add("lookahead")
            child.value = node.value
        await asyncio.gather(*(roll(c) for c in children if not c.terminal))


@strategies.register("lookahead")
class LookaheadSearch(BeamSearch):
    """Beam search whose step values come from a greedy rollout ``lookahead`` steps ahead."""

    lookahead: int = Field(default=1, ge=1, le=32, description="greedy steps to roll out")
