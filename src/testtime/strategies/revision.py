"""Sequential revision / self-refine (Madaan et al., 2023; Snell et al., 2024).

    attempt_0 := sample(problem)                              # n chains, one n-call
    for round 1..rounds:
        feedback := verifier(attempt_{r-1})                   # optional
        attempt_r := sample(conversation + attempt_{r-1} + "revise it" [+ feedback])
    return the best attempt by verifier score, by vote over all attempts, or the last one
"""

from __future__ import annotations

import asyncio
from typing import ClassVar, Literal

from pydantic import Field

from testtime.strategies.base import Context, StrategySettings, strategies
from testtime.strategies.voting import vote
from testtime.types import Candidate, Message, Problem, Prompt, Result
from testtime.verifiers.base import Verifier

REVISE = ("Review your previous solution and correct any mistakes. Solve the problem again "
          "step by step and finish with a last line of the form 'The answer is N'.")


@strategies.register("revision")
class Revision(StrategySettings):
    """The model revises its previous attempt ``rounds`` times, in ``n`` parallel chains."""

    uses_verifier: ClassVar[bool] = True
    default_verifier: ClassVar[str | None] = "confidence"

    n: int = Field(default=1, ge=1, le=1024, description="independent revision chains")
    rounds: int = Field(default=2, ge=0, le=64, description="revisions after the first attempt")
    feedback: bool = Field(default=True, description="show the verifier's score to the model")
    select: Literal["score", "vote", "last"] = "score"

    def verifier_for(self, given: Verifier | None) -> Verifier | None:
        """Its verifier only where it shows feedback or selects by score; else the caller's."""
        return super().verifier_for(given) if self.feedback or self.select == "score" else given

    async def run(self, problem: Problem, ctx: Context) -> Result:
        """First attempts, then revisions that extend each chain's conversation."""
        root = problem.prompt()
        current = await ctx.sample(root, self.n, temperature=self.temperature,
                                   max_tokens=self.max_tokens)
        chains = [(root, c) for c in current]
        attempts: list[Candidate] = []
        for r in range(self.rounds + 1):
            if ctx.verifier is not None:
                scored = await ctx.score(problem, [c for _, c in chains])
                chains = [(p, c) for (p, _), c in zip(chains, scored, strict=True)]
            attempts += [c for _, c in chains]
            ctx.trace.append({"round": r, "answers": [c.answer for _, c in chains],
                              "scores": [c.score.value if c.score else None for _, c in chains]})
            if r == self.rounds or ctx.exhausted:
                break
            chains = await self.revise(ctx, chains)
        return self.pick(problem, ctx, attempts, [c for _, c in chains])

    async def revise(self, ctx: Context,
                     chains: list[tuple[Prompt, Candidate]]) -> list[tuple[Prompt, Candidate]]:
        """One revision of every chain, concurrently; each prompt extends the previous one."""
        prompts = [self.follow_up(p, c) for p, c in chains]
        outs = await asyncio.gather(*(
            ctx.sample(p, 1, temperature=self.temperature, max_tokens=self.max_tokens)
            for p in prompts))
        return [(p, o[0]) for p, o in zip(prompts, outs, strict=True) if o]

    def follow_up(self, prompt: Prompt, attempt: Candidate) -> Prompt:
        """The conversation so far + the attempt + the request to revise (with feedback)."""
        ask = REVISE
        if self.feedback and attempt.score is not None:
            ask = (f"A verifier rated your previous solution {attempt.score.value:.2f} "
                   f"on a scale from 0 to 1. {REVISE}")
        return Prompt(messages=(*prompt.messages,
                                Message(role="assistant", content=attempt.text),
                                Message(role="user", content=ask)))

    def pick(self, problem: Problem, ctx: Context, attempts: list[Candidate],
             last: list[Candidate]) -> Result:
        """Choose among all attempts as ``select`` says."""
        if self.select == "vote":
            answer, votes = vote(attempts)
            return ctx.result(problem, answer, attempts, votes=votes)
        pool = last if self.select == "last" else attempts
        if not pool:
            return ctx.result(problem, None, attempts)
        best = max(range(len(pool)), key=lambda i: (pool[i].has_answer, _value(pool[i]), -i))
        return ctx.result(problem, pool[best].answer, attempts, text=pool[best].text,
                          rounds=self.rounds)


def _value(candidate: Candidate) -> float:
    return candidate.score.value if candidate.score is not None else 0.0
