"""LLM-as-a-judge: ask a model whether a solution is correct; score by P(yes)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Literal, NamedTuple

from pydantic import Field, PrivateAttr

from testtime.answers import extract_answer
from testtime.types import Candidate, GenerationRequest, Problem, Prompt, Score
from testtime.verifiers.base import VerifierSettings, VerifyContext, verifiers
from testtime.verifiers.verdicts import JudgeBackend, first_word, label_mass, verdict

JUDGE_SYSTEM = "You are a strict grader. You check solutions carefully and answer Yes or No."
ASK = "Is this final answer correct? Reply with only Yes or No."
ASK_THINKING = ("Check it: solve the problem yourself step by step, then compare your result "
                "with the proposed final answer. End with one line: Verdict: Yes or Verdict: No.")
ASK_AGAINST_REFERENCE = ("Does the proposed final answer equal the reference final answer? "
                         "Reply with only Yes or No.")
ASK_THINKING_AGAINST_REFERENCE = (
    "Compare the proposed solution with the reference solution step by step; the reference "
    "may be wrong too. End with one line: Verdict: Yes or Verdict: No.")

KEPT_REFERENCES = 1024


class Reference(NamedTuple):
    """The judge's own solution of a problem, shown when it grades (reference-guided grading)."""

    text: str
    answer: str | None


@verifiers.register("judge")
class JudgeVerifier(VerifierSettings):
    """A generative verifier: P(yes) from the first verdict token's top logprobs.

    Where the backend gives no logprobs (or ``mode=sample``), the score is the share of *yes*
    among ``k`` sampled verdicts. With ``think=T`` the judge first checks the solution in up
    to T tokens of its own working (a chain-of-thought verifier, as in generative reward
    models), then gives the verdict, read the same two ways. With ``solve=T`` the judge
    first solves the problem itself, greedily and without seeing any candidate, in up to T
    tokens, once per problem, and is asked whether each candidate's final answer equals the
    reference's (reference-guided grading, as MT-Bench grades math). The judge is the policy's
    backend unless ``backend=SPEC`` names another
    (e.g. ``judge:backend=[openai:http://host/v1,model=big]``).
    """

    backend: str | None = Field(default=None, description="judge backend spec; default: policy")
    mode: Literal["auto", "logprobs", "sample"] = "auto"
    k: int = Field(default=5, ge=1, le=64, description="sampled verdicts without logprobs")
    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    top: int = Field(default=10, ge=2, le=20, description="top logprobs to read")
    max_chars: int = Field(default=4000, ge=100, description="solution text shown, from the end")
    think: int = Field(default=0, ge=0, le=8192,
                       description="tokens the judge may spend checking before its verdict")
    solve: int = Field(default=0, ge=0, le=8192,
                       description="tokens the judge may spend solving the problem itself "
                                   "first, to grade against (reference-guided grading)")
    _judge: JudgeBackend | None = PrivateAttr(default=None)
    _references: dict[tuple[str, str], Reference] = PrivateAttr(default_factory=dict)
    _solving: dict[tuple[str, str], asyncio.Lock] = PrivateAttr(default_factory=dict)

    def model_post_init(self, __context: object) -> None:
        """Build the judge's own backend once."""
        self._judge = JudgeBackend(self.backend)

    def prompt(self, problem: Problem, candidate: Candidate,
               reference: Reference | None = None) -> Prompt:
        """The judge's prompt for one candidate, with the judge's own solution if given."""
        solution = f"Proposed solution:\n{candidate.text[-self.max_chars:]}"
        answers = f"The proposed final answer is: {candidate.answer or '(none given)'}"
        if reference is None:
            parts = [solution, answers, ASK_THINKING if self.think else ASK]
        else:
            if reference.answer is not None:
                answers = f"The reference final answer is: {reference.answer}\n{answers}"
            parts = [f"Reference solution:\n{reference.text[-self.max_chars:]}", solution,
                     answers,
                     ASK_THINKING_AGAINST_REFERENCE if self.think else ASK_AGAINST_REFERENCE]
        return Prompt.chat("\n\n".join([f"Problem:\n{problem.question}", *parts]),
                           system=JUDGE_SYSTEM)

    async def score(self, problem: Problem, candidates: Sequence[Candidate],
                    ctx: VerifyContext) -> list[Score]:
        """Ask the judge about every candidate concurrently."""
        reference = await self.reference(problem, ctx) if self.solve else None
        return list(await asyncio.gather(
            *(self._one(problem, c, ctx, reference) for c in candidates)))

    async def reference(self, problem: Problem, ctx: VerifyContext) -> Reference:
        """The judge's own greedy solution of ``problem``, made once and kept for later calls.

        Calls for the same problem at once (a gateway request's n choices) wait for one solve.
        """
        key = (problem.id, problem.question)
        found = self._references.get(key)
        if found is None:
            async with self._solving.setdefault(key, asyncio.Lock()):
                found = self._references.get(key)
                if found is None:
                    found = await self._solve(problem, ctx)
                    if len(self._references) >= KEPT_REFERENCES:
                        self._references.pop(next(iter(self._references)))
                    self._references[key] = found
            self._solving.pop(key, None)
        return found

    async def _solve(self, problem: Problem, ctx: VerifyContext) -> Reference:
        assert self._judge is not None
        gen = await self._judge.ask(ctx, GenerationRequest(
            prompt=problem.prompt(), n=1, max_tokens=self.solve, temperature=0.0))
        text = gen.completions[0].text if gen.completions else ""
        return Reference(text, extract_answer(text) if problem.kind == "math" else None)

    async def _one(self, problem: Problem, c: Candidate, ctx: VerifyContext,
                   reference: Reference | None) -> Score:
        assert self._judge is not None
        prompt = self.prompt(problem, c, reference)
        use_logprobs = self.mode == "logprobs" or (
            self.mode == "auto" and self._judge.get(ctx).capabilities.logprobs)
        if use_logprobs:
            asked = prompt
            if self.think:
                working = await self._judge.ask(ctx, GenerationRequest(
                    prompt=prompt, n=1, max_tokens=self.think, temperature=0.0,
                    stop=("Verdict",)))
                text = working.completions[0].text if working.completions else ""
                asked = prompt.extend(text.rstrip() + "\nVerdict:")
            gen = await self._judge.ask(ctx, GenerationRequest(
                prompt=asked, n=1, max_tokens=1, temperature=0.0, top_logprobs=self.top))
            tops = gen.completions[0].top_logprobs if gen.completions else None
            if tops:
                mass = label_mass(tops[0], ("yes", "no"))
                total = mass["yes"] + mass["no"]
                if total > 0:
                    return Score(value=mass["yes"] / total,
                                 detail=f"P(yes)={mass['yes']:.3f} P(no)={mass['no']:.3f}")
            if self.mode == "logprobs":
                return Score(value=0.5, detail="no yes/no among the judge's top tokens")
        gen = await self._judge.ask(ctx, GenerationRequest(
            prompt=prompt, n=self.k, max_tokens=self.think + 8 if self.think else 4,
            temperature=self.temperature))
        words = [verdict(x.text) if self.think else first_word(x.text) for x in gen.completions]
        yes, no = words.count("yes"), words.count("no")
        if yes + no == 0:
            return Score(value=0.5, detail=f"no verdict in {len(words)} samples")
        return Score(value=yes / (yes + no), detail=f"{yes} yes / {no} no of {len(words)}")
