"""Step expansion and scoring shared by the step-level searches (beam, DVTS, PF, MCTS).

A step is one generation cut at the step separator (a blank line by default). Every child of
a node is asked for in one ``n=M`` call, every node of a depth concurrently, and each depth is
scored by the process verifier in one call. Children continue the parent's prompt byte for
byte, so the engine's prompt cache serves the shared prefix.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import ClassVar, Literal

from pydantic import Field

from testtime.strategies.base import Context, StrategySettings
from testtime.strategies.tree import Node, SearchTree
from testtime.strategies.voting import vote
from testtime.types import Candidate, Problem, Prompt, Result
from testtime.verifiers.steps import aggregate

STEP_HINT = "Separate the steps with a blank line."
_FINAL = re.compile(r"(?i)answer is|\\boxed\{|####")


class SearchSettings(StrategySettings):
    """Options every step-level search shares. ``max_tokens`` is the limit for one step."""

    uses_verifier: ClassVar[bool] = True
    default_verifier: ClassVar[str | None] = "confidence"

    max_tokens: int = Field(default=128, ge=1, le=131072, description="tokens per step")
    max_depth: int = Field(default=8, ge=1, le=256, description="steps per solution")
    sep: str = Field(default="\n\n", min_length=1, description="step separator (stop string)")
    agg: Literal["last", "min", "product", "mean"] = Field(
        default="last", description="how a path's step scores make its value")
    select: Literal["score", "vote", "weighted"] = Field(
        default="score", description="final pick: best value, majority, or value-weighted vote")
    step_hint: bool = Field(default=True, description="ask the model to separate steps")

    def root_prompt(self, problem: Problem) -> Prompt:
        """The problem's prompt, asking for blank-line separated steps when ``step_hint``."""
        if not self.step_hint:
            return problem.prompt()
        hint = f"{problem.instruction} {STEP_HINT}" if problem.instruction else STEP_HINT
        return problem.model_copy(update={"instruction": hint}).prompt()

    def start(self, problem: Problem) -> SearchTree:
        """Open a tree for ``problem``."""
        return SearchTree(self.root_prompt(problem))

    def ends(self, step: str, depth: int) -> bool:
        """Whether a step at ``depth`` ends its solution: it states an answer, is empty
        (the model stopped), or the solution reached ``max_depth``."""
        return not step.strip() or bool(_FINAL.search(step)) or depth >= self.max_depth

    async def expand(self, ctx: Context, problem: Problem, tree: SearchTree,
                     parents: Sequence[Node], widths: Sequence[int],
                     temperature: float | None = None) -> list[Node]:
        """Sample ``widths[i]`` next steps of each parent (one call per parent, concurrently),
        score them all in one verifier call, and return the scored children."""
        temp = self.temperature if temperature is None else temperature
        groups = await asyncio.gather(*(
            ctx.sample(p.prompt, w, temperature=temp, max_tokens=self.max_tokens,
                       stop=(self.sep,), continued=True)
            for p, w in zip(parents, widths, strict=True) if w > 0))
        live = [p for p, w in zip(parents, widths, strict=True) if w > 0]
        children: list[Node] = []
        for parent, cands in zip(live, groups, strict=True):
            for cand in cands:
                step = cand.text[len(parent.prompt.prefix):]
                final = self.ends(step, parent.depth + 1)
                children.append(tree.child(parent, cand, terminal=final, sep=self.sep))
        await self.evaluate(ctx, problem, children)
        return children

    async def evaluate(self, ctx: Context, problem: Problem, nodes: Sequence[Node]) -> None:
        """Score each node's newest step and set its path value (one verifier call)."""
        cands = [n.candidate for n in nodes if n.candidate is not None]
        scored = await ctx.score(problem, cands)
        for node, cand in zip([n for n in nodes if n.candidate is not None], scored,
                              strict=True):
            score = cand.score
            step = 0.0 if score is None else (score.steps[-1] if score.steps else score.value)
            self.set_value(node, step)

    def set_value(self, node: Node, step_score: float) -> None:
        """Append ``step_score`` to the parent's step scores and aggregate them."""
        parent_scores = node.parent.step_scores if node.parent is not None else ()
        node.step_scores = (*parent_scores, step_score)
        node.value = aggregate(node.step_scores, self.agg)

    def finish(self, problem: Problem, ctx: Context, tree: SearchTree,
               leaves: Sequence[Node], **extra: object) -> Result:
        """Pick the answer among ``leaves`` (finished or, when the budget ran out, partial)."""
        cands: list[Candidate] = [c for c in (n.scored_candidate() for n in leaves) if c]
        answer, votes, text = None, {}, None
        if cands:
            if self.select == "score":
                best = max(range(len(leaves)),
                           key=lambda i: (leaves[i].answer is not None, leaves[i].value, -i))
                tree.mark([leaves[best]], "selected")
                answer, text = leaves[best].answer, leaves[best].text
                votes = vote(cands)[1]
            else:
                weights = [n.value for n in leaves] if self.select == "weighted" else None
                answer, votes = vote(cands, weights)
        tree.mark(list(leaves), "leaf")
        ctx.trace.extend(tree.export())
        return ctx.result(problem, answer, cands, text=text, votes=votes,
                          nodes=len(tree.nodes), **extra)


def top(nodes: Sequence[Node], k: int) -> list[Node]:
    """The ``k`` highest-valued nodes (ties: the earlier generated)."""
    return sorted(nodes, key=lambda n: (-n.value, n.id))[:k]
