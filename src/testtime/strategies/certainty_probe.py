"""Certainty probing (Dynasor-CoT, Fu et al., 2024): stop a trace once its answer is settled.

    for each of n traces, streamed:
        every probe_every tokens:
            probe := greedy continuation of  trace so far + "... the final answer is \\boxed{"
                     (a few tokens; the trace's prefix is already in the engine's cache)
            a probe whose answer tokens' mean probability is under min_certainty gave no answer
            if the last k probes gave the same answer: stop the trace; it answers that
    answer := majority vote over the traces' final or probed answers

A small model asked too early guesses, and guesses the same wrong number greedily probe after
probe; ``min_certainty`` discounts such guesses by the probe's own token probabilities (a number
copied from a computed step is near-certain, a guessed one is not).

Probes are ordinary policy calls, billed like the traces they probe; a trace keeps generating
while it is probed, and what it generated until the stop is billed too.
"""

from __future__ import annotations

from pydantic import Field

from testtime.answers import extract_answer, normalize
from testtime.confidence import mean_probability
from testtime.strategies.aggregate import aggregated_result
from testtime.strategies.base import Context, StrategySettings, strategies
from testtime.traces import Trace, Watcher
from testtime.types import Candidate, GenerationRequest, Piece, Problem, Prompt, Result

PROBE = ("\n\n... Oh, I suddenly got the answer to the whole problem, so the final answer "
         "is \\boxed{")


def probed_answer(text: str) -> str | None:
    """The answer a probe continuation gives (what it wrote inside the box), if any."""
    return extract_answer("\\boxed{" + text.split("}", 1)[0] + "}")


@strategies.register("certainty-probe")
class CertaintyProbe(StrategySettings):
    """Probe each trace for its answer every ``probe_every`` tokens; stop at ``k`` agreeing."""

    n: int = Field(default=1, ge=1, le=4096, description="traces; more than one are voted on")
    probe_every: int = Field(default=32, ge=1, le=131072,
                             description="tokens of a trace between two probes")
    k: int = Field(default=3, ge=1, le=64,
                   description="consecutive agreeing probes that stop a trace")
    probe_tokens: int = Field(default=12, ge=1, le=256,
                              description="most tokens a probe may generate")
    min_certainty: float = Field(
        default=0.0, ge=0.0, le=1.0, description="a probe's answer counts only when its tokens' "
        "geometric-mean probability reaches this (0: every answer counts, as in Dynasor-CoT)")

    async def probe(self, prompt: Prompt, trace: Trace, ctx: Context) -> str | None:
        """Ask for the answer the trace would give now (greedy, billed as a policy call)."""
        gen = await ctx.generate(GenerationRequest(
            prompt=prompt.extend(trace.text + PROBE), n=1, temperature=0.0,
            max_tokens=self.probe_tokens, stop=("}",), logprobs=self.min_certainty > 0))
        trace.notes["probes"] = trace.notes.get("probes", 0) + 1
        if not gen.completions:
            return None
        done = gen.completions[0]
        if self.min_certainty > 0 and mean_probability(done.logprobs) < self.min_certainty:
            return None
        return probed_answer(done.text)

    def watcher(self, prompt: Prompt, ctx: Context) -> Watcher:
        """Probe at every ``probe_every`` tokens; stop after ``k`` equal answers in a row."""
        async def watch(trace: Trace, piece: Piece) -> None:
            due = trace.notes.setdefault("due", self.probe_every)
            if trace.n_tokens < due or ctx.exhausted:
                return
            trace.notes["due"] = due + self.probe_every
            answer = await self.probe(prompt, trace, ctx)
            streak: list[str] = trace.notes.setdefault("streak", [])
            if answer is None or (streak and normalize(streak[-1]) != normalize(answer)):
                streak.clear()
            if answer is not None:
                streak.append(answer)
            if len(streak) >= self.k:
                trace.notes["probed"] = answer
                trace.notes["stopped_at"] = trace.n_tokens
                trace.stop()
        return watch

    async def run(self, problem: Problem, ctx: Context) -> Result:
        """Stream the traces under the probe, then vote over final or probed answers."""
        prompt = problem.prompt()
        traces = await ctx.traces(problem, self.n, watch=self.watcher(prompt, ctx),
                                  temperature=self.temperature, max_tokens=self.max_tokens)
        candidates: list[Candidate] = []
        for t in traces:
            if t.candidate is None:
                continue
            if t.candidate.completion.finish_reason == "stopped" and "probed" in t.notes:
                candidates.append(t.candidate.model_copy(update={"answer": t.notes["probed"]}))
            else:
                candidates.append(t.candidate)
        return await aggregated_result(
            problem, candidates, ctx, probes=sum(t.notes.get("probes", 0) for t in traces),
            stopped=sum(1 for c in candidates if c.completion.finish_reason == "stopped"))
