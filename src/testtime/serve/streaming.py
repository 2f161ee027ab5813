"""Server-sent events: token by token, or the chosen answer once the strategy has chosen it,
with keep-alive comments and progress events meanwhile.

When what goes out is this module's machinery; how it is written is an :class:`EventFormat`:
:class:`ChatEvents` here (chat/completions chunks), ``ResponsesEvents`` for the Responses API.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

from testtime.serve.errors import ApiError, error_body
from testtime.serve.responses import (
    Reply,
    chosen,
    details_body,
    finish_reason,
    logprobs_body,
    message_body,
    reply_text,
    tool_calls_body,
)
from testtime.types import Result

log = logging.getLogger("testtime.serve")
DONE = "data: [DONE]\n\n"
KEEPALIVE = ": keep-alive\n\n"


def sse(obj: dict[str, Any]) -> str:
    """One ``data:`` event."""
    return "data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n\n"


def answer_chunks(reply: Reply, index: int, result: Result) -> list[str]:
    """The chunks carrying one finished choice: thinking, content or tool calls, finish."""
    out = []
    c = chosen(result)
    logprobs = logprobs_body(c.completion if c else None) if reply.logprobs else None
    if reply.kind == "chat":
        message = message_body(result)
        if message.get("reasoning_content"):
            out.append(sse(reply.chunk(index=index, delta={
                "reasoning_content": message["reasoning_content"],
                "reasoning": message["reasoning"]})))
        if c is not None and c.completion.tool_calls:
            out.append(sse(reply.chunk(index=index, delta={
                "tool_calls": tool_calls_body(c.completion, delta=True)})))
        elif message["content"]:
            out.append(sse(reply.chunk(message["content"], index=index, logprobs=logprobs)))
    else:
        text = reply_text(result)
        if text:
            out.append(sse(reply.chunk(text, index=index)))
    out.append(sse(reply.chunk(None, index=index, finish=finish_reason(result),
                               extra=details_body(result, reply.details))))
    return out


class EventFormat(Protocol):
    """How one endpoint writes a stream; the machinery here decides what happens when."""

    id: str
    splits_thinking: bool

    def opening(self, choices: int) -> list[str]:
        """The events sent at once, before any work is done."""

    def progress(self, item: dict[str, Any]) -> str:
        """One progress report of a strategy still searching."""

    def delta(self, kind: str, text: str) -> list[str]:
        """Streamed text of the one sample (``kind``: ``reasoning`` or ``content``)."""

    def streamed_end(self, result: Result) -> list[str]:
        """The end of a stream whose text went out as deltas."""

    def answers(self, results: list[Result]) -> list[str]:
        """The whole answer of a strategy that has finished, and the end of the stream."""

    def failure(self, error: dict[str, Any]) -> list[str]:
        """A failure after the first byte (an OpenAI error body), ending the stream."""


class ChatEvents:
    """The chat/completions chunk format: role chunks, deltas, finish, usage and [DONE]."""

    def __init__(self, reply: Reply, include_usage: bool) -> None:
        self.reply = reply
        self.include_usage = include_usage
        self.id = reply.id
        self.splits_thinking = reply.kind == "chat"

    def opening(self, choices: int) -> list[str]:
        """A role chunk per choice (chat only)."""
        if self.reply.kind != "chat":
            return []
        return [sse(self.reply.chunk("", index=i, first=True)) for i in range(choices)]

    def progress(self, item: dict[str, Any]) -> str:
        """A chunk with an empty delta and ``testtime.progress``."""
        return sse(self.reply.chunk(index=int(item.get("choice", 0)), extra={"progress": item}))

    def delta(self, kind: str, text: str) -> list[str]:
        """A content or reasoning delta."""
        if kind == "content":
            return [sse(self.reply.chunk(text))]
        return [sse(self.reply.chunk(delta={"reasoning_content": text, "reasoning": text}))]

    def streamed_end(self, result: Result) -> list[str]:
        """The finish chunk, the usage chunk if asked for, and [DONE]."""
        out = [sse(self.reply.chunk(None, finish=finish_reason(result),
                                    extra=details_body(result, self.reply.details)))]
        return out + self._end([result])

    def answers(self, results: list[Result]) -> list[str]:
        """Each choice's answer chunks, then the usage chunk if asked for, and [DONE]."""
        out = [e for i, r in enumerate(results) for e in answer_chunks(self.reply, i, r)]
        return out + self._end(results)

    def failure(self, error: dict[str, Any]) -> list[str]:
        """The error body as a data event (the openai client raises it as APIError)."""
        return [sse(error)]

    def _end(self, results: list[Result]) -> list[str]:
        usage = [sse(self.reply.usage_chunk(results))] if self.include_usage else []
        return [*usage, DONE]


async def strategy_events(fmt: EventFormat, choices: int, work: Awaitable[list[Result]],
                          progress: asyncio.Queue[dict[str, Any]] | None, keepalive: float,
                          on_results: Callable[[list[Result]], None],
                          release: Callable[[], None]) -> AsyncIterator[str]:
    """Stream a strategy that answers only when it has finished searching.

    The opening events go out at once; while the strategy works, an SSE comment every
    ``keepalive`` seconds keeps proxies and client read timeouts from cutting the request,
    and each item put on ``progress`` goes out as a progress event. Then the answer. A
    failure after the first byte is sent as ``fmt``'s failure events.
    """
    task = asyncio.ensure_future(work)
    try:
        for event in fmt.opening(choices):
            yield event
        while not task.done():
            waits: set[asyncio.Future[Any]] = {task}
            getter = asyncio.ensure_future(progress.get()) if progress is not None else None
            if getter is not None:
                waits.add(getter)
            done, _ = await asyncio.wait(waits, timeout=keepalive,
                                         return_when=asyncio.FIRST_COMPLETED)
            if getter is not None and not getter.done():
                getter.cancel()
            if getter is not None and getter in done:
                yield fmt.progress(getter.result())
            elif not done:
                yield KEEPALIVE
        try:
            results = task.result()
        except ApiError as exc:
            for event in fmt.failure(exc.body()):
                yield event
            return
        except Exception:
            log.exception("unexpected error in a stream", extra={"request_id": fmt.id})
            for event in fmt.failure(error_body(500, f"internal error (response {fmt.id}; the "
                                                "server log has the details)",
                                                "internal_error")):
                yield event
            return
        on_results(results)
        for event in fmt.answers(results):
            yield event
    finally:
        if not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=5)
        release()


class ThinkSplitter:
    """Splits streamed text into thinking and reply as it arrives.

    A text that opens with ``<think>`` is thinking until ``</think>``; pieces are held back
    only while they might be the start of a tag, so deltas still flow token by token.
    """

    OPEN, CLOSE = "<think>", "</think>"

    def __init__(self) -> None:
        self.mode = "start"
        self.pending = ""

    def feed(self, piece: str) -> list[tuple[str, str]]:
        """``(kind, text)`` deltas for a new piece; kind is ``reasoning`` or ``content``."""
        self.pending += piece
        out: list[tuple[str, str]] = []
        if self.mode == "start":
            head = self.pending.lstrip()
            if head.startswith(self.OPEN):
                self.mode, self.pending = "think", head[len(self.OPEN):].lstrip("\n")
            elif self.OPEN.startswith(head):
                return out
            else:
                self.mode = "content"
        if self.mode == "think":
            if self.CLOSE in self.pending:
                thought, _, rest = self.pending.partition(self.CLOSE)
                out.append(("reasoning", thought))
                self.mode, self.pending = "content", rest.lstrip()
            else:
                keep = next((k for k in range(len(self.CLOSE) - 1, 0, -1)
                             if self.pending.endswith(self.CLOSE[:k])), 0)
                cut = len(self.pending) - keep
                out.append(("reasoning", self.pending[:cut]))
                self.pending = self.pending[cut:]
        if self.mode == "content" and self.pending:
            out.append(("content", self.pending))
            self.pending = ""
        return [(k, t) for k, t in out if t]

    def flush(self) -> list[tuple[str, str]]:
        """What is still held back, at the end of the stream."""
        kind = "reasoning" if self.mode == "think" else "content"
        text, self.pending = self.pending, ""
        return [(kind, text)] if text else []


async def token_events(fmt: EventFormat, first: str | Result,
                       rest: AsyncGenerator[str | Result, None],
                       on_result: Callable[[Result], None],
                       release: Callable[[], None]) -> AsyncIterator[str]:
    """Stream one sample's text pieces as the backend produces them, then its end.

    A failure after the first byte cannot change the HTTP status, so it is sent as ``fmt``'s
    failure events (for chat, an OpenAI ``error`` body the openai client raises as an
    APIError) and the stream ends.
    """
    try:
        for event in fmt.opening(1):
            yield event
        split = ThinkSplitter() if fmt.splits_thinking else None
        item: str | Result = first
        while True:
            if isinstance(item, Result):
                for kind, text in split.flush() if split else ():
                    for event in fmt.delta(kind, text):
                        yield event
                on_result(item)
                for event in fmt.streamed_end(item):
                    yield event
                return
            if item:
                for kind, text in split.feed(item) if split else [("content", item)]:
                    for event in fmt.delta(kind, text):
                        yield event
            try:
                item = await anext(rest)
            except ApiError as exc:
                for event in fmt.failure(exc.body()):
                    yield event
                return
            except StopAsyncIteration:
                for event in fmt.failure(error_body(502, "stream ended without a result",
                                                   "upstream_error")):
                    yield event
                return
    finally:
        release()
        await rest.aclose()
