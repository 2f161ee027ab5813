"""Replaying strategies on one shared pool of recorded samples.

A :class:`ReplayBackend` serves a problem's recorded samples (completions with their token
logprobs and top logprobs) in the order they were drawn, to ``generate`` and ``stream`` alike,
so the strategies' own code decides on the same samples: majority@k reads the first k,
early-stop its batches, DeepConf online streams them token by token and a stopped trace is
billed the tokens it had streamed. Continuations of an assistant prefix (a certainty probe) are
not in the pool and go to a live backend, billed as it counts them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

from testtime.backends.base import BackendError, Capabilities
from testtime.budget import CostModel, stopped_sink
from testtime.types import Completion, Generation, GenerationRequest, Piece


class ReplayBackend:
    """Serves ``samples`` in order; requests with an assistant prefix go to ``live``."""

    def __init__(self, samples: Sequence[Completion], *, prompt_tokens: int = 0,
                 live: Any = None) -> None:
        self.samples = list(samples)
        self.prompt_tokens = prompt_tokens
        self.live = live
        self.served = 0
        self.name = "replay"
        self.capabilities = Capabilities(max_n=max(len(self.samples), 1), logprobs=True,
                                         max_parallel=max(len(self.samples), 1),
                                         streaming=True)
        self.cost: CostModel = live.cost if live is not None else CostModel()

    def _take(self, req: GenerationRequest) -> list[Completion]:
        if self.served + req.n > len(self.samples):
            raise BackendError(f"the pool holds {len(self.samples)} samples; asked for "
                               f"{self.served + req.n}")
        out = self.samples[self.served:self.served + req.n]
        self.served += req.n
        return [c.model_copy(update={
            "logprobs": c.logprobs if req.logprobs else None,
            "top_logprobs": c.top_logprobs if req.top_logprobs else None,
            "tokens": c.tokens if req.logprobs else None}) for c in out]

    async def generate(self, req: GenerationRequest) -> Generation:
        """The next ``req.n`` recorded samples (a prefix continuation: the live backend's)."""
        if req.prompt.prefix:
            if self.live is None:
                raise BackendError("a replayed pool cannot continue a prefix without a live "
                                   "backend")
            gen: Generation = await self.live.generate(req)
            return gen
        return Generation(completions=tuple(self._take(req)),
                          prompt_tokens=self.prompt_tokens * req.n, counted_by="replayed pool")

    async def stream(self, req: GenerationRequest) -> AsyncIterator[Piece | Generation]:
        """The next recorded sample token by token; closed early, it reports the tokens sent."""
        if req.prompt.prefix:
            yield await self.generate(req)
            return
        done = self._take(req.model_copy(update={"n": 1}))[0]
        sink = stopped_sink()
        lps, tops, toks = done.logprobs or (), done.top_logprobs or (), done.tokens or ()
        sent, delivered = 0, False
        try:
            for i, lp in enumerate(lps):
                await asyncio.sleep(0)
                sent = i + 1
                yield Piece(text=toks[i] if i < len(toks) else "", logprobs=(lp,),
                            top_logprobs=tops[i:i + 1], tokens=toks[i:i + 1])
            delivered = True
            yield Generation(completions=(done,), prompt_tokens=self.prompt_tokens,
                             counted_by="replayed pool")
        finally:
            if not delivered and sink is not None:
                cut = done.model_copy(update={
                    "text": "".join(toks[:sent]), "finish_reason": "cancelled",
                    "generated_tokens": sent, "logprobs": tuple(lps[:sent]),
                    "top_logprobs": tuple(tops[:sent]) if done.top_logprobs else None,
                    "tokens": tuple(toks[:sent])})
                sink(Generation(completions=(cut,), prompt_tokens=self.prompt_tokens,
                                counted_by="replayed pool (stopped)"))

    async def ready(self) -> None:
        """Ready when the live backend is."""
        if self.live is not None:
            await self.live.ready()
            self.cost = self.live.cost

    async def close(self) -> None:
        """The live backend is the caller's to close."""
