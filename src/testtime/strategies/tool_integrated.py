"""Tool-integrated reasoning (Gou et al., 2024, "ToRA"): a trace that runs code as it thinks.

The model reasons in text and, where a computation helps, writes a Python block. Generation
pauses at the block's end (a stop string), the sandbox runs it, its output is appended to the
trace as an ```` ```output ```` block, and the model continues from there, at most
``max_calls`` times per trace; after the last allowed call the trace runs to its end without
pausing. The final answer is read from the finished trace as from any reply, so the traces
are voted on like any other samples (self-consistency over tool-integrated traces).
"""

from __future__ import annotations

import asyncio
import re
from typing import ClassVar

from pydantic import Field

from testtime.policy.pools import Pool
from testtime.strategies.aggregate import aggregated_result
from testtime.strategies.base import Context, strategies
from testtime.strategies.program import SandboxSettings
from testtime.types import Candidate, Message, Problem, Prompt, Result

SYSTEM = (
    "Solve the problem step by step. When a calculation is needed, write it as a Python code "
    "block (```python ... ```) that prints the result; its output is then shown to you in an "
    "```output block and you continue from there. Finish with 'The answer is N.'")
EXAMPLE = (
    "A box holds 12 eggs. A farm fills 35 boxes and then breaks 17 eggs. How many whole eggs "
    "are left?",
    "The farm has 35 boxes of 12 eggs, less the 17 broken ones.\n```python\n"
    "print(35 * 12 - 17)\n```\n```output\n403\n```\nThere are 403 whole eggs left. "
    "The answer is 403.")
PAUSE = ("\n```\n", "```output")
_BLOCK = re.compile(r"```(?:python|py)[ \t]*\n(.*?)(?:\n?```|\Z)(.*)\Z", re.DOTALL)


def tool_prompt(question: str) -> Prompt:
    """The tool-integrated prompt: the instruction, one worked trace, the question."""
    return Prompt(messages=(Message(role="system", content=SYSTEM),
                            Message(role="user", content=EXAMPLE[0]),
                            Message(role="assistant", content=EXAMPLE[1]),
                            Message(role="user", content=question)))


def pending_code(segment: str) -> str | None:
    """The code of the Python block ``segment`` ends on (open, or closed with nothing but
    whitespace after it): the call the trace paused for. None when it ends in prose."""
    starts = [m.start() for m in re.finditer(r"```(?:python|py)[ \t]*\n", segment)]
    if not starts:
        return None
    match = _BLOCK.match(segment, starts[-1])
    if match is None or match.group(2).strip():
        return None
    code = match.group(1)
    return code + "\n" if code.strip() else None


@strategies.register("tool-integrated")
class ToolIntegrated(SandboxSettings):
    """Sample ``n`` traces that may run code mid-generation (at most ``max_calls`` runs each),
    then vote over their final answers."""

    whole_replies: ClassVar[bool] = False
    pool: ClassVar[Pool | None] = None

    n: int = Field(default=4, ge=1, le=4096)
    max_calls: int = Field(default=3, ge=0, le=16, description="code runs per trace")

    def draw_prompt(self, problem: Problem) -> Prompt:
        """The tool-integrated prompt for the problem's question."""
        return tool_prompt(problem.question)

    async def draw(self, problem: Problem, ctx: Context, n: int) -> list[Candidate]:
        """``n`` tool-integrated traces (those the budget refused left out)."""
        prompt = self.draw_prompt(problem)
        traces = await asyncio.gather(*(self.trace(prompt, ctx, problem.kind)
                                        for _ in range(n)))
        return [t for t in traces if t is not None]

    async def trace(self, prompt: Prompt, ctx: Context, kind: str = "math") -> Candidate | None:
        """One trace: generate to a code block's end, run it, append its output, continue;
        ``max_tokens`` caps the trace's generated tokens in all."""
        text, used, calls = "", 0, 0
        last: Candidate | None = None
        while used < self.max_tokens:
            pause = PAUSE if calls < self.max_calls else ()
            got = await ctx.sample(prompt.extend(text), 1, temperature=self.temperature,
                                   max_tokens=self.max_tokens - used, stop=pause,
                                   continued=True)
            if not got:
                break
            last = got[0]
            segment = last.completion.text
            text += segment
            used += max(last.completion.generated_tokens, 1)
            code = pending_code(segment) if pause else None
            if code is None or last.completion.finish_reason == "length":
                break
            [run] = await self.run_code([code], ctx)
            calls += 1
            text = text.rstrip().removesuffix("```").rstrip("\n")
            text += f"\n```\n```output\n{run.feedback()}\n```\n"
        if last is None:
            return None
        return ctx.candidate(prompt.extend(text), last.completion.model_copy(
            update={"text": ""}), kind)

    async def run(self, problem: Problem, ctx: Context) -> Result:
        """Draw the traces, then majority-vote over their answers."""
        candidates = await self.draw(problem, ctx, self.n)
        return await aggregated_result(problem, candidates, ctx)
