"""Monte Carlo tree search over reasoning steps, with the verifier as value (UCT).

    repeat `iterations` times:
        select: from the root, follow the child maximising Q/N + c·sqrt(ln N_parent / N)
        expand: sample `width` next steps of the selected node        # one n=width call
        evaluate: each child's value is the verifier's score of its step, or, with
                  rollouts > 0, the mean score of `rollouts` completed solutions from it
        backpropagate: add the value to every node on the path
    return the best finished solution (by value)
"""

from __future__ import annotations

import asyncio
import math

from pydantic import Field

from testtime.strategies.base import Context, strategies
from testtime.strategies.stepping import SearchSettings, top
from testtime.strategies.tree import Node, SearchTree
from testtime.types import Problem, Result


@strategies.register("mcts")
class MCTS(SearchSettings):
    """UCT over partial solutions; the process verifier (optionally after rollouts) is value."""

    iterations: int = Field(default=8, ge=1, le=10000, description="select-expand rounds")
    width: int = Field(default=3, ge=1, le=256, description="children per expansion")
    c: float = Field(default=1.0, ge=0.0, le=100.0, description="UCT exploration constant")
    rollouts: int = Field(default=1, ge=0, le=64, description="completions per child (0: none)")
    rollout_tokens: int = Field(default=256, ge=1, le=131072,
                                description="token limit of one rollout")

    async def run(self, problem: Problem, ctx: Context) -> Result:
        """Select, expand, evaluate, backpropagate; return the best finished solution."""
        tree = self.start(problem)
        finished: list[Node] = []
        for _ in range(self.iterations):
            leaf = self.select_leaf(tree.root)
            if leaf.terminal:
                self.backpropagate(leaf, leaf.value)
                continue
            children = await self.expand(ctx, problem, tree, [leaf], [self.width])
            if not children:
                break
            if self.rollouts:
                finished += await self.roll_out(ctx, problem, tree, children)
            finished += [c for c in children if c.terminal]
            for child in children:
                self.backpropagate(child, child.value)
            if ctx.exhausted:
                break
        leaves = finished or top([n for n in tree.nodes if n.parent is not None], 1)
        return self.finish(problem, ctx, tree, leaves, iterations=self.iterations)

    def select_leaf(self, node: Node) -> Node:
        """Descend by UCT to a node with no children yet."""
        while node.children:
            node = max(node.children, key=lambda ch: self.uct(ch, node.visits))
        return node

    def uct(self, node: Node, parent_visits: int) -> float:
        """Mean value plus the exploration bonus; unvisited nodes come first."""
        if node.visits == 0:
            return math.inf
        return node.total / node.visits + self.c * math.sqrt(
            math.log(max(parent_visits, 1)) / node.visits)

    @staticmethod
    def backpropagate(node: Node | None, value: float) -> None:
        """Add one visit with ``value`` to ``node`` and all its ancestors."""
        while node is not None:
            node.visits += 1
            node.total += value
            node = node.parent

    async def roll_out(self, ctx: Context, problem: Problem, tree: SearchTree,
                       children: list[Node]) -> list[Node]:
        """Complete each unfinished child ``rollouts`` times (one call per child, concurrent);
        its value becomes the mean value of its completions, which are returned."""
        live = [c for c in children if not c.terminal]
        groups = await asyncio.gather(*(
            ctx.sample(c.prompt, self.rollouts, temperature=self.temperature,
                       max_tokens=self.rollout_tokens) for c in live))
        done: list[Node] = []
        for child, cands in zip(live, groups, strict=True):
            outs = [tree.child(child, cand, terminal=True, sep=self.sep, attach=False)
                    for cand in cands]
            tree.mark(outs, "rollout")
            done += outs
        await self.evaluate(ctx, problem, done)
        for child in live:
            mine = [d for d in done if d.parent is child]
            if mine:
                child.value = sum(d.value for d in mine) / len(mine)
        return done
