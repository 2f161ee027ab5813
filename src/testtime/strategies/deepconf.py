"""DeepConf (Fu et al., 2025, "Deep Think with Confidence"): vote only with confident traces.

    conf(t) := measure over t's token confidences      # token: -mean top-k logprob
    offline:
        sample n traces
        keep the top eta% of traces by conf
        answer := argmax_a  sum of conf(t) over kept traces t answering a
    online:
        sample `warmup` traces whole
        s := percentile(100 - eta) of their conf       # eta=10 aggressive, eta=90 cautious
        while traces < n and the weighted vote's leader holds < consensus of the weight:
            sample `batch` traces; stop each once its last `window` tokens' mean
            confidence falls below s (stopped traces do not vote)
        answer := the offline rule over the warm-up and unstopped traces

Run on :class:`testtime.eval.replay.ReplayBackend`, the same code decides on a recorded pool of
samples: where its online traces stop and what they cost. With ``samples=SPEC`` the traces are
what SPEC's strategy draws (a trace that pauses to run code is confident by the tokens it
generated in all its segments; online, each segment is watched).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from pydantic import Field, model_validator

from testtime.confidence import (
    Measure,
    SlidingMean,
    percentile,
    token_scores,
    trace_confidence,
)
from testtime.strategies.base import Context, strategies
from testtime.strategies.samples import SamplesOption
from testtime.strategies.voting import tally, vote
from testtime.traces import Trace, Watcher
from testtime.types import Candidate, Piece, Problem, Result


@strategies.register("deepconf")
class DeepConf(SamplesOption):
    """Confidence-filtered, confidence-weighted voting; online mode stops unconfident traces."""

    mode: Literal["offline", "online"] = Field(
        default="online", description="offline: filter n whole traces; online: warm up, then "
        "stop traces whose group confidence falls below the warm-up threshold")
    n: int = Field(default=16, ge=1, le=4096, description="most traces sampled")
    warmup: int = Field(default=8, ge=1, le=4096,
                        description="online: traces sampled whole to set the threshold")
    batch: int = Field(default=4, ge=1, le=4096,
                       description="online: traces sampled per round after the warm-up")
    eta: float = Field(default=90.0, gt=0.0, le=100.0,
                       description="percent of traces kept for voting (the paper's eta: 10 "
                       "aggressive, 90 cautious); online, the threshold is the warm-up "
                       "confidences' (100 - eta)-th percentile")
    window: int = Field(default=32, ge=1, le=131072,
                        description="tokens per group (sliding window); the paper's 2048 suits "
                        "long reasoning traces, short answers need a short window")
    consensus: float = Field(default=0.95, gt=0.5, le=1.0,
                             description="online: stop sampling once the leading answer holds "
                             "this share of the confidence-weighted vote (the paper's tau)")
    measure: Measure = Field(default="lowest-window",
                             description="trace confidence for filtering and weights: "
                             "lowest-window, bottom (q share of windows), tail or mean")
    q: float = Field(default=0.1, gt=0.0, le=1.0, description="share of lowest groups "
                     "averaged by measure=bottom (the paper's bottom-10%)")
    top_logprobs: int = Field(default=5, ge=1, le=20,
                              description="top-k alternatives per token in its confidence")

    @model_validator(mode="after")
    def _fits(self) -> DeepConf:
        if self.mode == "online" and self.warmup > self.n:
            raise ValueError("warmup must not exceed n")
        return self

    def confidence(self, c: Candidate) -> float:
        """The trace confidence of a whole candidate by ``measure``."""
        comp = c.completion
        return trace_confidence(token_scores(comp.logprobs, comp.top_logprobs),
                                self.measure, self.window, self.q)

    def threshold(self, warm: Sequence[Candidate]) -> float:
        """The online stopping threshold: the (100 - eta)-th percentile of warm-up confidence."""
        return percentile([self.confidence(c) for c in warm], 100.0 - self.eta)

    def decide(self, voters: Sequence[Candidate]) -> tuple[str | None, dict[str, float]]:
        """Keep the top ``eta`` percent of ``voters`` by confidence; confidence-weighted vote."""
        if not voters:
            return None, {}
        confs = [self.confidence(c) for c in voters]
        keep = max(1, math.ceil(len(voters) * self.eta / 100.0))
        order = sorted(range(len(voters)), key=lambda i: (-confs[i], i))[:keep]
        return vote([voters[i] for i in order], [max(confs[i], 1e-9) for i in order])

    def settled(self, voters: Sequence[Candidate]) -> bool:
        """Whether the leader holds ``consensus`` of the confidence-weighted vote."""
        rows = tally(voters, [max(self.confidence(c), 1e-9) for c in voters])
        total = sum(w for _, w, _ in rows)
        return bool(rows) and rows[0][1] / total >= self.consensus

    def watcher(self, threshold: float) -> Watcher:
        """The online rule for one round: stop a trace once a full window falls below it."""
        def watch(trace: Trace, piece: Piece) -> None:
            group: SlidingMean = trace.notes.setdefault("group", SlidingMean(self.window))
            for score in token_scores(piece.logprobs, piece.top_logprobs):
                mean = group.push(score)
                if mean is not None and mean < threshold:
                    trace.notes["stopped_at"] = group.count
                    trace.stop()
                    return
        return watch

    async def traces(self, problem: Problem, ctx: Context, n: int,
                     watch: Watcher | None = None) -> list[Candidate]:
        """``n`` traces with their top logprobs, streamed under ``watch`` (online)."""
        return await self.draw(problem, ctx, n, top_logprobs=self.top_logprobs,
                               watch=watch or unwatched)

    async def run(self, problem: Problem, ctx: Context) -> Result:
        """Offline: sample, filter, weigh. Online: warm up, then rounds of watched traces."""
        if self.mode == "offline":
            got = await self.draw(problem, ctx, self.n, top_logprobs=self.top_logprobs)
            answer, votes = self.decide(got)
            return ctx.result(problem, answer, got, votes=votes, mode=self.mode,
                              voters=len(got), traces=len(got))
        warm = await self.traces(problem, ctx, self.warmup)
        if not warm:
            return ctx.result(problem, None, [], mode=self.mode, traces=0)
        threshold = self.threshold(warm)
        voters, seen, started = list(warm), list(warm), self.warmup
        while started < self.n and not self.settled(voters) and not ctx.exhausted:
            size = min(self.batch, self.n - started)
            started += size
            for c in await self.traces(problem, ctx, size, self.watcher(threshold)):
                seen.append(c)
                if c.completion.finish_reason != "stopped":
                    voters.append(c)
        answer, votes = self.decide(voters)
        return ctx.result(problem, answer, seen, votes=votes, mode=self.mode,
                          threshold=round(threshold, 4), voters=len(voters), traces=len(seen),
                          stopped=len(seen) - len(voters))


def unwatched(trace: Trace, piece: Piece) -> None:
    """The warm-up's watcher: it streams its traces like the later rounds, stopping none."""
