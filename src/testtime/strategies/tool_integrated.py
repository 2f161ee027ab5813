"""Tool-integrated reasoning (Gou et al., 2024, "ToRA"): a trace that runs code as it thinks.

The model reasons in text and, where a computation helps, writes a Python block. Generation
pauses at the block's end (a stop string), the sandbox runs it, its output is appended to the
trace as an ```` ```output ```` block, and the model continues from there, at most
``max_calls`` times per trace; after the last allowed call the trace runs to its end without
pausing. The final answer is read from the finished trace as from any reply, so the traces
are voted on like any other samples (self-consistency over tool-integrated traces).

A trace is a sample like any other to the strategies that take ``samples=SPEC``: it carries
the logprobs of every token it generated across its segments (the tool output between them
is prompt, not generated), so a confidence filter weighs the whole trace; streamed under a
watcher, every segment is watched, and a trace stopped in one segment runs no more code.
Its vote declares a pool of its own (``tool-integrated``, never the chain-of-thought
``majority``), so the policy fit scores ``tool-integrated@k`` from one set of traces.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import re
from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import Field

from testtime.policy.pools import Pool
from testtime.strategies.aggregate import aggregated_result
from testtime.strategies.base import Context, strategies
from testtime.strategies.program import SandboxSettings
from testtime.traces import Trace, Watcher
from testtime.types import (
    Candidate,
    Completion,
    GenerationRequest,
    Message,
    Piece,
    Problem,
    Prompt,
    Result,
)

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


def joined(parts: Sequence[Completion], cut: bool) -> Completion:
    """One completion for a trace's generated segments: their tokens (logprobs, top logprobs,
    token texts, where every segment has them) and counts; the tool output between them is
    prompt, not generated, so none of it is here. Its text is empty (the trace is the
    prompt's prefix); ``cut``: the trace ran out of tokens (finish reason ``length``)."""
    def chained(field: str) -> tuple[Any, ...] | None:
        seqs = [getattr(p, field) for p in parts]
        return None if any(s is None for s in seqs) else tuple(itertools.chain(*seqs))

    return Completion(text="", finish_reason="length" if cut else parts[-1].finish_reason,
                      generated_tokens=sum(p.generated_tokens for p in parts),
                      logprobs=chained("logprobs"), top_logprobs=chained("top_logprobs"),
                      tokens=chained("tokens"))


def relayed(watch: Watcher, whole: Trace) -> Watcher:
    """A segment's watcher that shows ``watch`` the whole trace so far (its notes kept across
    segments) and stops the segment when ``watch`` stops the trace."""
    async def relay(segment: Trace, piece: Piece) -> None:
        whole.add(piece)
        out = watch(whole, piece)
        if inspect.isawaitable(out):
            await out
        if whole.stopped:
            segment.stop()
    return relay


@strategies.register("tool-integrated")
class ToolIntegrated(SandboxSettings):
    """Sample ``n`` traces that may run code mid-generation (at most ``max_calls`` runs each),
    then vote over their final answers."""

    whole_replies: ClassVar[bool] = False
    draws_samples: ClassVar[bool] = True
    pool: ClassVar[Pool | None] = Pool("tool-integrated", drawn_by="tool-integrated")

    n: int = Field(default=4, ge=1, le=4096)
    max_calls: int = Field(default=3, ge=0, le=16, description="code runs per trace")

    def draw_prompt(self, problem: Problem) -> Prompt:
        """The tool-integrated prompt for the problem's question."""
        return tool_prompt(problem.question)

    @property
    def drawn_as(self) -> str:
        """What its offered traces are drawn as (a trace is not one call's completion)."""
        return f"{self.registered_name}:max_calls={self.max_calls}"

    async def draw(self, problem: Problem, ctx: Context, n: int, *, top_logprobs: int = 0,
                   watch: Watcher | None = None) -> list[Candidate]:
        """``n`` tool-integrated traces (those the budget refused left out), offered ones
        first where they were drawn alike; under ``watch`` every segment is streamed."""
        prompt = self.draw_prompt(problem)
        reused: list[Candidate] = []
        if watch is None:
            reused = ctx.take_offered(GenerationRequest(
                prompt=prompt, n=n, temperature=self.temperature, max_tokens=self.max_tokens,
                logprobs=top_logprobs > 0, top_logprobs=top_logprobs), self.drawn_as)
        traces = await asyncio.gather(*(self.trace(prompt, ctx, problem.kind,
                                                   top_logprobs=top_logprobs, watch=watch)
                                        for _ in range(n - len(reused))))
        return reused + [t for t in traces if t is not None]

    def offer_drawn(self, problem: Problem, ctx: Context, candidates: Sequence[Candidate]
                    ) -> None:
        """Leave whole traces for the next draw of traces alike (never for a plain sample)."""
        comps = [c.completion for c in candidates]
        tops = min((len(t[0]) if t else 0 for t in (c.top_logprobs for c in comps)),
                   default=0)
        ctx.offer(self.draw_prompt(problem), candidates, temperature=self.temperature,
                  max_tokens=self.max_tokens, drawn_as=self.drawn_as,
                  logprobs=all(c.logprobs is not None for c in comps), top_logprobs=tops)

    async def trace(self, prompt: Prompt, ctx: Context, kind: str = "math", *,
                    top_logprobs: int = 0, watch: Watcher | None = None) -> Candidate | None:
        """One trace: generate to a code block's end, run it, append its output, continue;
        ``max_tokens`` caps the trace's generated tokens in all. A trace that runs out of
        tokens (mid-segment, or right after a run) is cut off: only a marked answer counts."""
        text, used, calls = "", 0, 0
        parts: list[Completion] = []
        whole = Trace(index=0)
        ran_last = False
        while used < self.max_tokens:
            pause = PAUSE if calls < self.max_calls else ()
            got = await self.segment(prompt.extend(text), ctx, kind, stop=pause,
                                     max_tokens=self.max_tokens - used,
                                     top_logprobs=top_logprobs,
                                     watch=relayed(watch, whole) if watch else None)
            if got is None:
                break
            done = got.completion
            parts.append(done)
            text += done.text
            used += max(done.generated_tokens, 1)
            ran_last = False
            code = pending_code(done.text) if pause else None
            if code is None or done.finish_reason in ("length", "stopped"):
                break
            [run] = await self.run_code([code], ctx)
            calls += 1
            ran_last = True
            text = text.rstrip().removesuffix("```").rstrip("\n")
            text += f"\n```\n```output\n{run.feedback()}\n```\n"
        if not parts:
            return None
        return ctx.candidate(prompt.extend(text), joined(parts, cut=ran_last), kind)

    async def segment(self, prompt: Prompt, ctx: Context, kind: str, *, stop: Sequence[str],
                      max_tokens: int, top_logprobs: int, watch: Watcher | None
                      ) -> Candidate | None:
        """One step of a trace: sampled whole, or streamed under ``watch``."""
        if watch is not None:
            [t] = await ctx.traces(prompt, 1, watch=watch, temperature=self.temperature,
                                   max_tokens=max_tokens, stop=stop,
                                   top_logprobs=top_logprobs, kind=kind)
            return t.candidate
        got = await ctx.sample(prompt, 1, temperature=self.temperature, max_tokens=max_tokens,
                               stop=stop, top_logprobs=top_logprobs, continued=True, kind=kind)
        return got[0] if got else None

    async def run(self, problem: Problem, ctx: Context) -> Result:
        """Draw the traces, then majority-vote over their answers."""
        candidates = await self.draw(problem, ctx, self.n)
        return await aggregated_result(problem, candidates, ctx)
