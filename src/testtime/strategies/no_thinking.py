"""NoThinking (Ma et al., 2025, "Reasoning Models Can Be Effective Without Thinking"): skip the
reasoning, sample short answers in parallel, vote.

    prefill the reply so that thinking is over:
        "<think>\\nOkay, I think I have finished thinking.\\n</think>\\n\\n"   (reasoning models)
        "The answer is"                                                     (plain models)
    sample n answers from it at once                # a few tokens each, not a chain of thought
    answer := majority vote over the n

A handful of tokens per sample makes this the cheapest parallel scaling there is; on easy
questions it matches a chain of thought at a fraction of the tokens, and how much its answers
agree is a cheap probe of how hard a question is (the compute-optimal policy uses both).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from testtime.policy.pools import Pool
from testtime.strategies.aggregate import aggregated_result
from testtime.strategies.base import Context, StrategySettings, strategies
from testtime.types import Problem, Prompt, Result
from testtime.verifiers.base import Verifier

FINISHED_THINKING = "<think>\nOkay, I think I have finished thinking.\n</think>\n\n"
"""The paper's prefill for reasoning models: the thinking block, closed at once."""


@strategies.register("no-thinking")
class NoThinking(StrategySettings):
    """Prefill the reply past the reasoning and majority-vote ``n`` short answers.
    ``style=plain`` starts the reply with ``answer_cue`` and stops at the end of its line;
    ``style=tags`` closes an empty ``<think>`` block (reasoning models) and lets the model
    write its answer."""

    pool: ClassVar[Pool | None] = Pool("no-thinking", drawn_by="no-thinking")
    draws_samples: ClassVar[bool] = True

    n: int = Field(default=8, ge=1, le=4096, description="answers sampled")
    style: Literal["plain", "tags"] = "plain"
    answer_cue: str = Field(default="The answer is", min_length=1,
                            description="the reply's start in plain style")
    max_tokens: int = Field(default=16, ge=1, le=131072)

    def draw_prompt(self, problem: Problem) -> Prompt:
        """The problem's prompt with the reply prefilled past the thinking."""
        prefill = FINISHED_THINKING if self.style == "tags" else self.answer_cue
        return problem.prompt().extend(prefill)

    @property
    def draw_stop(self) -> tuple[str, ...]:
        """Plain answers end with their line."""
        return ("\n",) if self.style == "plain" else ()

    async def run(self, problem: Problem, ctx: Context) -> Result:
        """Sample the answers, then majority-vote over equivalent ones. With a ``verifier``
        the answers are scored too (their confidence, a difficulty probe's feature); the vote
        stays a plain majority."""
        answers = await self.draw(problem, ctx, self.n)
        if self.verifier:
            answers = await ctx.score(problem, answers)
        return await aggregated_result(problem, answers, ctx)

    def verifier_for(self, given: Verifier | None) -> Verifier | None:
        """Its own verifier where its spec names one (to score its answers), else the
        caller's."""
        return self.own_verifier or given
