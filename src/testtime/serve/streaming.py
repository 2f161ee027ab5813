"""Server-sent events in the OpenAI chunk format: token by token, or the chosen answer once
the strategy has chosen it, with keep-alive comments and progress chunks meanwhile."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

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


async def final_answer_events(reply: Reply, results: list[Result],
                              include_usage: bool) -> AsyncIterator[str]:
    """Stream finished results: a role chunk, the answer, a finish chunk per choice."""
    for i, r in enumerate(results):
        if reply.kind == "chat":
            yield sse(reply.chunk("", index=i, first=True))
        for event in answer_chunks(reply, i, r):
            yield event
    if include_usage:
        yield sse(reply.usage_chunk(results))
    yield DONE


async def strategy_events(reply: Reply, choices: int, work: Awaitable[list[Result]],
                          progress: asyncio.Queue[dict[str, Any]] | None, keepalive: float,
                          include_usage: bool, on_results: Callable[[list[Result]], None],
                          release: Callable[[], None]) -> AsyncIterator[str]:
    """Stream a strategy that answers only when it has finished searching.

    The role chunk of every choice goes out at once; while the strategy works, an SSE comment
    every ``keepalive`` seconds keeps proxies and client read timeouts from cutting the
    request, and each item put on ``progress`` goes out as a chunk whose ``testtime.progress``
    says how far the search is. Then each choice's answer, its finish reason, and the usage
    chunk. A failure after the first byte is sent as an OpenAI ``error`` event.
    """
    task = asyncio.ensure_future(work)
    try:
        if reply.kind == "chat":
            for i in range(choices):
                yield sse(reply.chunk("", index=i, first=True))
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
                yield sse(reply.chunk(index=int(getter.result().get("choice", 0)),
                                      extra={"progress": getter.result()}))
            elif not done:
                yield KEEPALIVE
        try:
            results = task.result()
        except ApiError as exc:
            yield sse(exc.body())
            return
        except Exception:
            log.exception("unexpected error in a stream", extra={"request_id": reply.id})
            yield sse(error_body(500, f"internal error (response {reply.id}; the server log "
                                 "has the details)", "internal_error"))
            return
        on_results(results)
        for i, r in enumerate(results):
            for event in answer_chunks(reply, i, r):
                yield event
        if include_usage:
            yield sse(reply.usage_chunk(results))
        yield DONE
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


def think_chunk(reply: Reply, kind: str, text: str) -> str:
    """A content or reasoning delta."""
    if kind == "content":
        return sse(reply.chunk(text))
    return sse(reply.chunk(delta={"reasoning_content": text, "reasoning": text}))


async def token_events(reply: Reply, first: str | Result, rest: AsyncGenerator[str | Result, None],
                       include_usage: bool, on_result: Callable[[Result], None],
                       release: Callable[[], None]) -> AsyncIterator[str]:
    """Stream one sample's text pieces as the backend produces them, then finish and usage.

    A failure after the first byte cannot change the HTTP status, so it is sent as an OpenAI
    ``error`` event (which the openai client raises as an APIError) and the stream ends.
    """
    try:
        if reply.kind == "chat":
            yield sse(reply.chunk("", first=True))
        split = ThinkSplitter() if reply.kind == "chat" else None
        item: str | Result = first
        while True:
            if isinstance(item, Result):
                for kind, text in split.flush() if split else ():
                    yield think_chunk(reply, kind, text)
                on_result(item)
                yield sse(reply.chunk(None, finish=finish_reason(item),
                                      extra=details_body(item, reply.details)))
                if include_usage:
                    yield sse(reply.usage_chunk([item]))
                yield DONE
                return
            if item and split is not None:
                for kind, text in split.feed(item):
                    yield think_chunk(reply, kind, text)
            elif item:
                yield sse(reply.chunk(item))
            try:
                item = await anext(rest)
            except ApiError as exc:
                yield sse(exc.body())
                return
            except StopAsyncIteration:
                yield sse(error_body(502, "stream ended without a result", "upstream_error"))
                return
    finally:
        release()
        await rest.aclose()
