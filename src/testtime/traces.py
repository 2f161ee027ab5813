"""Online trace control: run samples as streams, watch each piece, stop any trace part way.

A :class:`Trace` collects what its stream has brought so far (text, token logprobs, top
logprobs). After every piece a watcher sees the trace and may call ``trace.stop()`` (on it or
on any other trace of the batch); the stream is then closed, the engine stops generating that
trace alone, and the tokens it had generated are recorded through ``metered_stream`` as a
stopped trace. A finisher hears of each trace that ends by itself while the others still run
(short-m@k stops the rest from there). Backends that cannot stream are called whole and their
completion is fed to the watcher token by token: decisions are the same, but every token was
generated and is billed.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from testtime.backends.base import part_request
from testtime.budget import Ledger
from testtime.metered import metered_generate, metered_stream
from testtime.types import Candidate, Completion, Generation, GenerationRequest, Piece

Watcher = Callable[["Trace", Piece], Awaitable[None] | None]
Finisher = Callable[["Trace", Completion], None]
"""Told when a trace's stream has ended by itself (not stopped), with its completion."""


@dataclass
class Trace:
    """One sample as far as its stream has come; ``stop()`` ends it after the current piece."""

    index: int
    text: str = ""
    logprobs: list[float] = field(default_factory=list)
    top_logprobs: list[dict[str, float]] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    stopped: bool = False
    candidate: Candidate | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def n_tokens(self) -> int:
        """Tokens seen so far."""
        return len(self.logprobs)

    def stop(self) -> None:
        """Stop generating this trace (idempotent; a finished trace stays finished)."""
        self.stopped = True

    def add(self, piece: Piece) -> None:
        """Append a streamed piece."""
        self.text += piece.text
        self.logprobs += piece.logprobs
        self.top_logprobs += piece.top_logprobs
        self.tokens += piece.tokens


async def _notify(watch: Watcher | None, trace: Trace, piece: Piece) -> None:
    if watch is not None:
        out = watch(trace, piece)
        if inspect.isawaitable(out):
            await out


def _stopped(trace: Trace, req: GenerationRequest, generated: int) -> Completion:
    """The completion of a stopped trace: what was seen, billed at what the engine made."""
    return Completion(
        text=trace.text, finish_reason="stopped",
        generated_tokens=max(generated, trace.n_tokens),
        logprobs=tuple(trace.logprobs),
        top_logprobs=tuple(trace.top_logprobs) if req.top_logprobs else None,
        tokens=tuple(trace.tokens))


async def run_trace(ledger: Ledger, backend: Any, req: GenerationRequest, trace: Trace,
                    watch: Watcher | None, on_finish: Finisher | None = None
                    ) -> Completion | None:
    """Generate one trace (``req.n`` is 1) under ``watch``; None when the budget refused it.

    ``on_finish`` hears of the trace the moment it ends by itself, before the rest of its
    batch is done, so it may stop the others.
    """
    done = await _run_trace(ledger, backend, req, trace, watch)
    if done is not None and done.finish_reason != "stopped" and on_finish is not None:
        on_finish(trace, done)
    return done


async def _run_trace(ledger: Ledger, backend: Any, req: GenerationRequest, trace: Trace,
                     watch: Watcher | None) -> Completion | None:
    if not callable(getattr(backend, "stream", None)):
        return await _replayed(ledger, backend, req, trace, watch)
    cut: list[Generation] = []
    stream = metered_stream(ledger, backend, req, on_cut=cut.append)
    final: Generation | None = None
    try:
        async for item in stream:
            if isinstance(item, Generation):
                final = item
                break
            trace.add(item)
            await _notify(watch, trace, item)
            if trace.stopped:
                break
    finally:
        await stream.aclose()
    if final is not None:
        trace.stopped = False
        return final.completions[0] if final.completions else None
    return _stopped(trace, req, sum(g.generated_tokens for g in cut))


async def _replayed(ledger: Ledger, backend: Any, req: GenerationRequest, trace: Trace,
                    watch: Watcher | None) -> Completion | None:
    """A whole call fed to ``watch`` token by token, for backends that cannot stream."""
    gen = await metered_generate(ledger, backend, req)
    if not gen.completions:
        return None
    done = gen.completions[0]
    lps, tops, toks = done.logprobs or (), done.top_logprobs or (), done.tokens or ()
    for i, lp in enumerate(lps):
        piece = Piece(text=toks[i] if i < len(toks) else "", logprobs=(lp,),
                      top_logprobs=tops[i:i + 1], tokens=toks[i:i + 1])
        trace.add(piece)
        await _notify(watch, trace, piece)
        if trace.stopped:
            return _stopped(trace, req, done.generated_tokens)
    return done


async def run_traces(ledger: Ledger, backend: Any, req: GenerationRequest,
                     traces: list[Trace], watch: Watcher | None,
                     on_finish: Finisher | None = None) -> list[Completion | None]:
    """Run ``traces`` concurrently, trace ``i`` as sample ``i`` of ``req``.

    When one fails (or the caller is cancelled), the others are stopped, their work is
    billed, and the error is raised.
    """
    tasks = [asyncio.ensure_future(run_trace(ledger, backend, part_request(req, t.index, 1), t,
                                             watch, on_finish)) for t in traces]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
