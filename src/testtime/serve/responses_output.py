"""Responses API response objects and stream events, built from testtime Results.

The chosen reply is an ``output``: a ``reasoning`` item for its thinking (as chat's
``reasoning_content``), then a ``message`` item with one ``output_text`` part, or one
``function_call`` item per tool call. Usage counts every token the request caused, as chat's
does, with chat's ``testtime`` extension.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from testtime.serve.responses import chosen, details_body, finish_reason, message_body, usage_body
from testtime.serve.responses_input import ResponsesRequest
from testtime.types import Result

FAILED_CODES = {"rate_limit_error": "rate_limit_exceeded",
                "invalid_request_error": "invalid_prompt"}
"""An OpenAI error type as the Responses ``error.code`` (any other type: server_error)."""


def responses_usage(result: Result) -> dict[str, Any]:
    """Responses ``usage``: chat's counts under the Responses names.

    ``output_tokens`` is every generated and verifier token, as chat's ``completion_tokens``;
    ``reasoning_tokens`` is the part of it the reply does not show: the other samples and the
    verifiers, the test-time search itself.
    """
    chat = usage_body(result.usage, len(result.candidates))
    c = chosen(result)
    shown = c.completion.generated_tokens if c is not None else 0
    output = chat["completion_tokens"]
    return {"input_tokens": chat["prompt_tokens"],
            "input_tokens_details": {
                "cached_tokens": chat["prompt_tokens_details"]["cached_tokens"],
                "cache_write_tokens": 0},
            "output_tokens": output,
            "output_tokens_details": {"reasoning_tokens": max(output - shown, 0)},
            "total_tokens": chat["total_tokens"],
            "testtime": chat["testtime"]}


def status_of(result: Result) -> str:
    """``incomplete`` where the reply was cut by its token limit, else ``completed``."""
    return "incomplete" if finish_reason(result) == "length" else "completed"


def text_part(text: str) -> dict[str, Any]:
    """An ``output_text`` content part."""
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def reasoning_part(text: str) -> dict[str, Any]:
    """A ``reasoning_text`` content part."""
    return {"type": "reasoning_text", "text": text}


@dataclass
class ResponsesReply:
    """One response's identity and the request settings it reports back."""

    model: str
    echo: dict[str, Any]
    details: bool = False
    hex: str = field(default_factory=lambda: uuid.uuid4().hex)
    created_at: int = field(default_factory=lambda: int(time.time()))

    @classmethod
    def of(cls, req: ResponsesRequest, details: bool) -> ResponsesReply:
        """The reply to ``req``, echoing its settings as OpenAI's responses do."""
        fmt = req.text.format.model_dump(by_alias=True, exclude_none=True) if (
            req.text and req.text.format) else {"type": "text"}
        choice = req.tool_choice
        echo = {
            "instructions": req.instructions, "max_output_tokens": req.max_output_tokens,
            "metadata": req.metadata or {},
            "parallel_tool_calls": req.parallel_tool_calls is not False,
            "reasoning": {"effort": req.reasoning.effort if req.reasoning else None,
                          "summary": None},
            "temperature": req.temperature, "top_p": req.top_p,
            "text": {"format": fmt},
            "tool_choice": choice.model_dump(exclude_none=True)
            if choice is not None and not isinstance(choice, str) else (choice or "auto"),
            "tools": [t.model_dump() for t in req.tools or ()],
            "user": req.user}
        return cls(req.model, echo, details)

    @property
    def id(self) -> str:
        """The response id (``resp_...``)."""
        return f"resp_{self.hex}"

    def item_id(self, kind: str, index: int) -> str:
        """The id of output item ``index``: ``msg_``, ``rs_`` or ``fc_``, this response's
        hex and the index (the same whether the item is streamed or not)."""
        return f"{kind}_{self.hex}{index:02d}"

    def envelope(self, status: str, output: list[dict[str, Any]],
                 result: Result | None = None,
                 error: dict[str, Any] | None = None) -> dict[str, Any]:
        """The response object with ``output`` (usage and details when there is a result)."""
        body: dict[str, Any] = {
            "id": self.id, "object": "response", "created_at": self.created_at,
            "status": status, "background": False, "error": error,
            "incomplete_details": {"reason": "max_output_tokens"}
            if status == "incomplete" else None,
            "model": self.model, "output": output, "previous_response_id": None,
            "store": False, "truncation": "disabled", **self.echo, "usage": None}
        if status in ("completed", "incomplete"):
            body["completed_at"] = int(time.time())
        if result is not None:
            body["usage"] = responses_usage(result)
            body["testtime"] = details_body(result, self.details)
        return body

    def output(self, result: Result) -> list[dict[str, Any]]:
        """The output items of a finished result."""
        message = message_body(result)
        items: list[dict[str, Any]] = []
        if message.get("reasoning_content"):
            items.append({"type": "reasoning", "id": self.item_id("rs", 0), "summary": [],
                          "content": [reasoning_part(message["reasoning_content"])],
                          "status": "completed"})
        c = chosen(result)
        calls = c.completion.tool_calls if c is not None else ()
        for i, call in enumerate(calls):
            items.append({"type": "function_call", "id": self.item_id("fc", len(items)),
                          "call_id": call.id or f"call_{i}", "name": call.name,
                          "arguments": call.arguments, "status": "completed"})
        if not calls:
            items.append({"type": "message", "id": self.item_id("msg", len(items)),
                          "role": "assistant",
                          "status": status_of(result),
                          "content": [text_part(message["content"] or "")]})
        return items

    def body(self, results: list[Result]) -> dict[str, Any]:
        """The whole non-streamed response for the one result."""
        result = results[0]
        return self.envelope(status_of(result), self.output(result), result)


class ResponsesEvents:
    """The Responses API stream: typed events with sequence numbers, item by item.

    Streamed text opens a ``reasoning`` or ``message`` item at its first delta and closes it
    when the other kind begins or the sample ends; an answer chosen after the search is sent
    item by item, each text in one delta. A failure after the first byte is an ``error``
    event and ``response.failed``.
    """

    splits_thinking = True

    def __init__(self, reply: ResponsesReply) -> None:
        self.reply = reply
        self.id = reply.id
        self.seq = 0
        self.items: list[dict[str, Any]] = []
        self.open: dict[str, Any] | None = None
        self.text = ""

    def event(self, kind: str, **fields: Any) -> str:
        """One SSE event of type ``kind`` with the next sequence number."""
        data = {"type": kind, "sequence_number": self.seq, **fields}
        self.seq += 1
        payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        return f"event: {kind}\ndata: {payload}\n\n"

    def opening(self, choices: int) -> list[str]:
        """``response.created`` and ``response.in_progress``."""
        body = self.reply.envelope("in_progress", [])
        return [self.event("response.created", response=body),
                self.event("response.in_progress", response=body)]

    def progress(self, item: dict[str, Any]) -> str:
        """A ``testtime.progress`` event: how far the strategy's search is."""
        return self.event("testtime.progress", progress=item)

    def delta(self, kind: str, text: str) -> list[str]:
        """A text delta of the reasoning or message item, opening it first if need be."""
        item_type = "reasoning" if kind == "reasoning" else "message"
        out = []
        if self.open is None or self.open["type"] != item_type:
            out += self._close("completed")
            out += self._open(item_type)
        self.text += text
        index = len(self.items)
        where = {"item_id": self.reply.item_id("rs" if kind == "reasoning" else "msg", index),
                 "output_index": index, "content_index": 0}
        if item_type == "reasoning":
            return [*out, self.event("response.reasoning_text.delta", **where, delta=text)]
        return [*out, self.event("response.output_text.delta", **where, delta=text,
                                 logprobs=[])]

    def streamed_end(self, result: Result) -> list[str]:
        """Close the streamed items (there is always a message) and complete."""
        out = []
        if self.open is None or self.open["type"] != "message":
            out += self._close("completed")
            out += self._open("message")
        out += self._close(status_of(result))
        return [*out, self._terminal(self.reply.envelope(status_of(result), self.items,
                                                         result))]

    def answers(self, results: list[Result]) -> list[str]:
        """Every output item of the chosen answer, then the terminal event."""
        body = self.reply.body(results)
        out = []
        for index, item in enumerate(body["output"]):
            out += self._item(index, item)
        return [*out, self._terminal(body)]

    def failure(self, error: dict[str, Any]) -> list[str]:
        """An ``error`` event, then ``response.failed``."""
        err = error["error"]
        code = FAILED_CODES.get(err.get("type"), "server_error")
        failed = self.reply.envelope("failed", self.items,
                                     error={"code": code, "message": err["message"]})
        return [self.event("error", code=err.get("code"), message=err["message"],
                           param=err.get("param")),
                self.event("response.failed", response=failed)]

    def _terminal(self, body: dict[str, Any]) -> str:
        kind = "response.incomplete" if body["status"] == "incomplete" else "response.completed"
        return self.event(kind, response=body)

    def _open(self, item_type: str) -> list[str]:
        index = len(self.items)
        if item_type == "reasoning":
            item: dict[str, Any] = {"type": "reasoning", "id": self.reply.item_id("rs", index),
                                    "summary": [], "content": [], "status": "in_progress"}
            part = reasoning_part("")
        else:
            item = {"type": "message", "id": self.reply.item_id("msg", index),
                    "role": "assistant", "status": "in_progress", "content": []}
            part = text_part("")
        self.open, self.text = item, ""
        return [self.event("response.output_item.added", output_index=index, item=item),
                self.event("response.content_part.added", item_id=item["id"],
                           output_index=index, content_index=0, part=part)]

    def _close(self, status: str) -> list[str]:
        if self.open is None:
            return []
        item, index, text = self.open, len(self.items), self.text
        reasoning = item["type"] == "reasoning"
        part = reasoning_part(text) if reasoning else text_part(text)
        done = {**item, "content": [part], "status": status}
        where = {"item_id": item["id"], "output_index": index, "content_index": 0}
        self.items.append(done)
        self.open = None
        text_done = (self.event("response.reasoning_text.done", **where, text=text) if reasoning
                     else self.event("response.output_text.done", **where, text=text,
                                     logprobs=[]))
        return [text_done,
                self.event("response.content_part.done", **where, part=part),
                self.event("response.output_item.done", output_index=index, item=done)]

    def _item(self, index: int, item: dict[str, Any]) -> list[str]:
        """The events of one finished item, as if it had been streamed in one delta."""
        if item["type"] != "function_call":
            kind = "reasoning" if item["type"] == "reasoning" else "content"
            out = self.delta(kind, item["content"][0]["text"])
            return [*out, *self._close(item["status"])]
        where = {"item_id": item["id"], "output_index": index}
        self.items.append(item)
        return [self.event("response.output_item.added", output_index=index,
                           item={**item, "arguments": "", "status": "in_progress"}),
                self.event("response.function_call_arguments.delta", **where,
                           delta=item["arguments"]),
                self.event("response.function_call_arguments.done", **where,
                           arguments=item["arguments"], name=item["name"]),
                self.event("response.output_item.done", output_index=index, item=item)]
