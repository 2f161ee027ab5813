"""Listwise selection (GenSelect-style): show a model several solutions, ask which is correct."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import ClassVar, Literal

from pydantic import Field, PrivateAttr

from testtime.types import Candidate, GenerationRequest, Problem, Prompt, Score
from testtime.verifiers.base import VerifierSettings, VerifyContext, verifiers
from testtime.verifiers.verdicts import JudgeBackend, first_word, label_mass

SELECT_SYSTEM = "You are a strict grader. You compare solutions and pick the correct one."


@verifiers.register("judge-select")
class JudgeSelectVerifier(VerifierSettings):
    """Candidates are shown in groups of up to ``group``; each gets P(its number is picked).

    The pick's probability comes from the top logprobs of the first answer token, or, without
    logprobs, from the share of ``k`` sampled picks. With ``rounds > 1`` each group is asked
    again with the order rotated and the probabilities are averaged, to cancel position bias.
    A score depends on the other candidates, so these scores are never cached.
    """

    cacheable: ClassVar[bool] = False

    backend: str | None = Field(default=None, description="judge backend spec; default: policy")
    mode: Literal["auto", "logprobs", "sample"] = "auto"
    group: int = Field(default=4, ge=2, le=9)
    rounds: int = Field(default=1, ge=1, le=9)
    k: int = Field(default=5, ge=1, le=64)
    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    max_chars: int = Field(default=1500, ge=100, description="text shown per solution")
    _judge: JudgeBackend | None = PrivateAttr(default=None)

    def model_post_init(self, __context: object) -> None:
        """Build the judge's own backend once."""
        self._judge = JudgeBackend(self.backend)

    def prompt(self, problem: Problem, shown: Sequence[Candidate]) -> Prompt:
        """The selection prompt for one ordered group."""
        parts = [f"Problem:\n{problem.question}\n"]
        for i, c in enumerate(shown, 1):
            parts.append(f"Solution {i}:\n{c.text[-self.max_chars:]}\n"
                         f"(final answer: {c.answer or 'none'})\n")
        parts.append(f"Which solution is correct? Reply with only its number (1-{len(shown)}).")
        return Prompt.chat("\n".join(parts), system=SELECT_SYSTEM)

    async def score(self, problem: Problem, candidates: Sequence[Candidate],
                    ctx: VerifyContext) -> list[Score]:
        """Split into groups, ask about each (all rounds concurrently), average the picks."""
        jobs = []
        for members in self.groups(len(candidates)):
            for r in range(self.rounds):
                shift = r % len(members)
                jobs.append(members[shift:] + members[:shift])
        picks = await asyncio.gather(
            *(self._ask(problem, [candidates[i] for i in order], ctx) for order in jobs))
        totals = [0.0] * len(candidates)
        counts = [0] * len(candidates)
        for order, probs in zip(jobs, picks, strict=True):
            for i, p in zip(order, probs, strict=True):
                totals[i] += p
                counts[i] += 1
        return [Score(value=totals[i] / counts[i], detail=f"picked in {counts[i]} round(s)")
                if counts[i] else Score(value=0.5, detail="no other solution to compare with")
                for i in range(len(candidates))]

    def groups(self, count: int) -> list[list[int]]:
        """Groups of up to ``group`` candidates in which every candidate has company.

        A candidate left alone at the end is shown with members of the group before it (who
        are then judged once more), instead of scoring 1.0 for want of rivals.
        """
        groups = [list(range(i, min(i + self.group, count)))
                  for i in range(0, count, self.group)]
        if len(groups) > 1 and len(groups[-1]) == 1:
            lone = groups[-1][0]
            groups[-1] = [lone, *groups[-2][: self.group - 1]]
        return [g for g in groups if len(g) > 1]

    async def _ask(self, problem: Problem, shown: list[Candidate],
                   ctx: VerifyContext) -> list[float]:
        assert self._judge is not None
        labels = [str(i) for i in range(1, len(shown) + 1)]
        prompt = self.prompt(problem, shown)
        use_logprobs = self.mode == "logprobs" or (
            self.mode == "auto" and self._judge.get(ctx).capabilities.logprobs)
        if use_logprobs:
            gen = await self._judge.ask(ctx, GenerationRequest(
                prompt=prompt, n=1, max_tokens=1, temperature=0.0, top_logprobs=20))
            tops = gen.completions[0].top_logprobs if gen.completions else None
            if tops:
                mass = label_mass(tops[0], labels)
                total = sum(mass.values())
                if total > 0:
                    return [mass[lab] / total for lab in labels]
        gen = await self._judge.ask(ctx, GenerationRequest(
            prompt=prompt, n=self.k, max_tokens=4, temperature=self.temperature))
        words = [first_word(x.text) for x in gen.completions]
        votes = [words.count(lab) for lab in labels]
        total = sum(votes)
        if total == 0:
            return [1.0 / len(shown)] * len(shown)
        return [v / total for v in votes]
