"""A deterministic backend for unit tests of strategy logic.

A responder function maps (prompt, sample index, request) to text. Tokens are whitespace-split
words, so counts are exact and predictable; stop strings and max_tokens are honoured like a
real engine; a call cancelled during its ``delay`` reports the words it had reached; a prompt
that shares a word prefix with one of the last 256 reports those words as cached, like a
prefix cache. ``stream`` yields one piece per word; closing it reports the words it had reached.
``token_tops(text, i)`` scripts the top logprobs of a completion's i-th word (its own logprob is
the first entry), for both calls and streams.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from pydantic import Field

from testtime.backends.base import BackendSettings, Capabilities, backends
from testtime.budget import CostModel, stopped_sink
from testtime.types import Completion, Generation, GenerationRequest, Piece, Prompt

Responder = Callable[[Prompt, int, GenerationRequest], str]


class ScriptedSettings(BackendSettings):
    """Options of ``scripted:text=…``: always answer with ``text`` (for CLI smoke tests)."""

    text: str = "The answer is 0."
    max_n: int = Field(default=64, ge=1)
    delay: float = Field(default=0.0, ge=0.0)
    record: bool = Field(default=True, description="keep every request in `requests` (tests); "
                                                    "off for long runs")

    positional = "text"


def render(prompt: Prompt) -> str:
    """The flat text a scripted model 'sees', used for cache accounting and responders."""
    def line(m: Any) -> str:
        calls = "".join(f" [call {c.name} {c.arguments}]" for c in m.tool_calls)
        return f"{m.role}: {m.content}{calls}"

    return "\n".join(line(m) for m in prompt.messages) + "\nassistant: " + prompt.prefix


@backends.register("scripted")
class ScriptedBackend:
    """Deterministic fake engine driven by a responder function."""

    Settings = ScriptedSettings

    def __init__(self, settings: ScriptedSettings | None = None, *,
                 responder: Responder | None = None, max_n: int | None = None,
                 delay: float | Callable[[str], float] | None = None,
                 logprob: Callable[[str], float] | None = None,
                 top_logprobs: Callable[[Prompt, str], dict[str, float]] | None = None,
                 token_tops: Callable[[str, int], dict[str, float]] | None = None) -> None:
        self.settings = settings or ScriptedSettings()
        fixed = self.settings.text
        self.responder: Responder = responder or (lambda prompt, i, req: fixed)
        self.capabilities = Capabilities(
            max_n=max_n or self.settings.max_n, logprobs=True, prefix_cache=True,
            max_parallel=64, streaming=False)
        self.name = "scripted"
        self.cost = CostModel()
        self.delay = self.settings.delay if delay is None else delay
        self.logprob = logprob or (lambda text: -0.1)
        self.top_logprobs = top_logprobs
        self.token_tops = token_tops
        self.requests: list[GenerationRequest] = []
        self.cancelled = 0
        self._seen: deque[list[str]] = deque(maxlen=256)
        self._counter = itertools.count()

    @classmethod
    def cycle(cls, texts: Sequence[str], **kwargs: Any) -> ScriptedBackend:
        """A backend that answers with ``texts`` in turn, whatever the prompt."""
        counter = itertools.count()
        return cls(responder=lambda p, i, r: texts[next(counter) % len(texts)], **kwargs)

    def _cached(self, words: list[str]) -> int:
        best = 0
        for seen in self._seen:
            k = 0
            for a, b in zip(seen, words, strict=False):
                if a != b:
                    break
                k += 1
            best = max(best, k)
        self._seen.append(words)
        return best

    async def generate(self, req: GenerationRequest) -> Generation:
        """Answer with the responder's texts, cut at stop strings and max_tokens."""
        if self.settings.record:
            self.requests.append(req)
        if req.n > self.capabilities.max_n:
            raise ValueError(f"scripted backend asked for n={req.n} > max_n")
        prompt_words = render(req.prompt).split()
        cached = self._cached(prompt_words)
        completions = []
        for i in range(req.n):
            text = self.responder(req.prompt, i, req)
            completions.append(self._finish(text, req))
        delay = self.delay(render(req.prompt)) if callable(self.delay) else self.delay
        if delay:
            sink = stopped_sink()
            started = time.monotonic()
            try:
                await asyncio.sleep(delay * max(c.generated_tokens for c in completions))
            except asyncio.CancelledError:
                self.cancelled += 1
                if sink is not None:
                    sink(self._stopped(completions, len(prompt_words), cached,
                                       int((time.monotonic() - started) / delay)))
                raise
        return Generation(completions=tuple(completions), prompt_tokens=len(prompt_words),
                          cached_tokens=cached, counted_by="scripted-words")

    @staticmethod
    def _stopped(completions: list[Completion], prompt: int, cached: int,
                 words: int) -> Generation:
        """What was 'generated' by a call stopped after ``words`` words' worth of delay."""
        cut = tuple(c.model_copy(update={
            "text": " ".join(c.text.split()[:words]), "finish_reason": "cancelled",
            "generated_tokens": min(words, c.generated_tokens)}) for c in completions)
        return Generation(completions=cut, prompt_tokens=prompt, cached_tokens=cached,
                          counted_by="scripted-words (stopped)")

    def _finish(self, text: str, req: GenerationRequest) -> Completion:
        reason = "stop"
        for stop in req.stop:
            if stop and stop in text:
                text = text[: text.index(stop)]
        words = list(re.finditer(r"\S+", text))
        if len(words) > req.max_tokens:
            text, reason = text[: words[req.max_tokens - 1].end()], "length"
        n_tokens = len(text.split())
        lps = tuple(self.logprob(text) for _ in range(max(n_tokens, 1))) if req.logprobs else None
        tops = None
        if req.top_logprobs and self.top_logprobs is not None:
            tops = (self.top_logprobs(req.prompt, text),) * max(n_tokens, 1)
        if self.token_tops is not None and n_tokens:
            scripted = tuple(self.token_tops(text, i) for i in range(n_tokens))
            lps = tuple(next(iter(t.values())) for t in scripted) if req.logprobs else None
            tops = scripted if req.top_logprobs else None
        tokens = tuple(text.split()) or ("",) if req.logprobs else None
        return Completion(text=text, finish_reason=reason, generated_tokens=n_tokens,
                          logprobs=lps, top_logprobs=tops, tokens=tokens)

    async def stream(self, req: GenerationRequest) -> AsyncIterator[Piece | Generation]:
        """Yield the one completion word by word (each word a token), then the Generation."""
        gen = await self.generate(req.model_copy(update={"n": 1}))
        sink = stopped_sink()
        done = gen.completions[0]
        words = re.findall(r"\s*\S+", done.text)
        sent, delivered = 0, False
        try:
            for i, word in enumerate(words):
                lps = (done.logprobs or ())[i:i + 1]
                tops = (done.top_logprobs or ())[i:i + 1]
                toks = (done.tokens or ())[i:i + 1]
                await asyncio.sleep(0)
                sent = i + 1
                yield Piece(text=word, logprobs=lps, top_logprobs=tops, tokens=toks)
            delivered = True
            yield gen
        finally:
            if not delivered and sink is not None:
                sink(self._stopped(list(gen.completions), gen.prompt_tokens, gen.cached_tokens,
                                   sent))

    async def ready(self) -> None:
        """Always ready."""

    async def close(self) -> None:
        """Nothing to release."""
