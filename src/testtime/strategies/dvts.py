"""Diverse Verifier Tree Search (Beeching et al., 2024; search-and-learn).

    split the N-sample budget into N/M independent subtrees
    each subtree: sample M first steps                    # all subtrees in one n=N call
    repeat until every subtree has finished or max_depth:
        in each unfinished subtree keep its single best child (by the verifier)
        sample M next steps of it                         # one n=M call per subtree, concurrent
    return the best of the subtrees' finished solutions
"""

from __future__ import annotations

from pydantic import Field, model_validator

from testtime.strategies.base import Context, strategies
from testtime.strategies.stepping import SearchSettings, top
from testtime.strategies.tree import Node
from testtime.types import Problem, Result


@strategies.register("dvts")
class DVTS(SearchSettings):
    """Greedy verifier search in N/M independent subtrees, for diversity across answers."""

    n: int = Field(default=8, ge=1, le=4096, description="total children per step (N)")
    width: int = Field(default=4, ge=1, le=4096, description="children per subtree (M)")

    @model_validator(mode="after")
    def _width_divides(self) -> DVTS:
        if self.width > self.n:
            raise ValueError(f"width ({self.width}) must not exceed n ({self.n})")
        return self

    async def run(self, problem: Problem, ctx: Context) -> Result:
        """Grow each subtree greedily by its verifier until all have finished."""
        tree = self.start(problem)
        subtrees = max(self.n // self.width, 1)
        first = await self.expand(ctx, problem, tree, [tree.root], [subtrees * self.width])
        groups = [first[i * self.width:(i + 1) * self.width] for i in range(subtrees)]
        done: list[Node] = []
        while True:
            frontier: list[Node] = []
            for group in groups:
                if not group:
                    continue
                best = top(group, 1)[0]
                tree.mark([best], "kept")
                if best.terminal:
                    done.append(best)
                else:
                    frontier.append(best)
            if not frontier or ctx.exhausted:
                done += frontier
                break
            children = await self.expand(ctx, problem, tree, frontier,
                                         [self.width] * len(frontier))
            groups = [[c for c in children if c.parent is b] for b in frontier]
        return self.finish(problem, ctx, tree, done, subtrees=subtrees)
