"""Budget forcing (Muennighoff et al., 2025, "s1: Simple test-time scaling").

    think := ""                                   # inside <think> for reasoning models
    while thinking tokens < max_think:
        think += generate(until the end of thinking, at most max_think - used tokens)
        if the model stopped before min_think: think += "Wait"     # suppress the early stop
        else: break
    force the end of thinking ("</think>", or nothing for plain models), then the answer cue
    answer := generate(a few tokens)
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from testtime.strategies.base import Context, StrategySettings, strategies
from testtime.types import Candidate, Completion, Problem, Prompt, Result


@strategies.register("budget-forcing")
class BudgetForcing(StrategySettings):
    """Control thinking length: cut it at ``max_think`` tokens, extend it with "Wait" below
    ``min_think``. ``style=tags`` wraps thinking in <think>…</think> (reasoning models);
    ``style=plain`` treats the answer cue ("The answer is") as the end of thinking."""

    min_think: int = Field(default=0, ge=0, le=131072, description="least thinking tokens")
    max_think: int = Field(default=512, ge=1, le=131072, description="most thinking tokens")
    style: Literal["tags", "plain"] = "plain"
    think_start: str = "<think>\n"
    think_end: str = "</think>"
    wait: str = Field(default="Wait", min_length=1, description="appended on an early stop")
    answer_cue: str = Field(default="The answer is", min_length=1)
    answer_tokens: int = Field(default=32, ge=1, le=4096)
    max_waits: int = Field(default=64, ge=0, le=10000, description="give up extending after")
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)

    @model_validator(mode="after")
    def _ordered(self) -> BudgetForcing:
        if self.min_think > self.max_think:
            raise ValueError(f"min_think ({self.min_think}) exceeds max_think "
                             f"({self.max_think})")
        return self

    async def run(self, problem: Problem, ctx: Context) -> Result:
        """Think within [min_think, max_think] tokens, then force the final answer."""
        start = self.think_start if self.style == "tags" else ""
        ends = (self.think_end,) if self.style == "tags" else (
            self.answer_cue, self.answer_cue.lower())
        prompt = problem.prompt().extend(start)
        thought, waits, forced = 0, 0, False
        while thought < self.max_think and not ctx.exhausted:
            cands = await ctx.sample(prompt, 1, temperature=self.temperature,
                                     max_tokens=self.max_think - thought, stop=ends)
            if not cands:
                break
            piece = cands[0].completion
            thought += piece.generated_tokens
            prompt = prompt.extend(piece.text)
            if piece.finish_reason == "length" or thought >= self.max_think:
                forced = True
                break
            if thought >= self.min_think or waits >= self.max_waits:
                break
            prompt = prompt.extend(self._wait_text(prompt.prefix))
            waits += 1
        closing = f"\n{self.think_end}\n\n{self.answer_cue}" if self.style == "tags" else (
            f"\n{self.answer_cue}" if not prompt.prefix.endswith("\n") else self.answer_cue)
        final = prompt.extend(closing)
        answers = await ctx.sample(final, 1, temperature=0.0, max_tokens=self.answer_tokens,
                                   stop=("\n",))
        cands_out: list[Candidate] = answers or [self._partial(final)]
        answer = cands_out[0].answer
        ctx.trace.append({"thinking_tokens": thought, "waits": waits, "forced_end": forced})
        return ctx.result(problem, answer, cands_out, text=cands_out[0].text,
                          thinking_tokens=thought, waits=waits, forced_end=forced)

    def _wait_text(self, so_far: str) -> str:
        sep = "" if not so_far or so_far[-1].isspace() else " "
        return f"{sep}{self.wait}"

    @staticmethod
    def _partial(prompt: Prompt) -> Candidate:
        return Context.candidate(prompt, Completion(text="", finish_reason="budget"))
