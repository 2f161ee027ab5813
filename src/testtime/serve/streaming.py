"""Server-sent events in the OpenAI chunk format: token by token, or the final answer at once."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

from testtime.serve.errors import ApiError, error_body
from testtime.serve.responses import Reply, details_body, finish_reason, reply_text
from testtime.types import Result

DONE = "data: [DONE]\n\n"


def sse(obj: dict[str, Any]) -> str:
    """One ``data:`` event."""
    return "data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n\n"


async def final_answer_events(reply: Reply, results: list[Result],
                              include_usage: bool) -> AsyncIterator[str]:
    """Stream finished results: a role chunk, the full text, a finish chunk per choice."""
    for i, r in enumerate(results):
        if reply.kind == "chat":
            yield sse(reply.chunk("", index=i, first=True))
        text = reply_text(r)
        if text:
            yield sse(reply.chunk(text, index=i))
        yield sse(reply.chunk(None, index=i, finish=finish_reason(r),
                              extra=details_body(r, reply.details)))
    if include_usage:
        yield sse(reply.usage_chunk(results))
    yield DONE


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
        item: str | Result = first
        while True:
            if isinstance(item, Result):
                on_result(item)
                yield sse(reply.chunk(None, finish=finish_reason(item),
                                      extra=details_body(item, reply.details)))
                if include_usage:
                    yield sse(reply.usage_chunk([item]))
                yield DONE
                return
            if item:
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
