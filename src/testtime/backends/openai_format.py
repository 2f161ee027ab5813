"""The OpenAI chat wire format, shared by every backend that speaks it (llama.cpp's in-process
handlers and OpenAI-compatible servers): the request body, streamed tool-call fragments, and
top-logprob lists."""

from __future__ import annotations

import math
from typing import Any

from testtime.types import GenerationRequest, Prompt, ToolCall


def chat_request(prompt: Prompt, req: GenerationRequest, n: int) -> dict[str, Any]:
    """The OpenAI-style chat body for a request; an assistant prefix is sent as a prefill.

    Every message (tool calls and tool results included) and the request's tools and
    response format go to the engine as they are, so the model's own chat template renders
    them; the prefill is the last message, after the whole conversation. Sampler settings the
    request leaves unset are not sent, so the engine's own defaults hold.
    """
    messages = [m.to_openai() for m in prompt.messages]
    if prompt.prefix:
        messages.append({"role": "assistant", "content": prompt.prefix})
    body: dict[str, Any] = {
        "messages": messages,
        "n": n,
        "max_tokens": req.max_tokens,
        "temperature": req.temperature,
        **req.chosen(),
    }
    if req.stop:
        body["stop"] = list(req.stop)
    if req.seed is not None:
        body["seed"] = req.seed
    if req.logprobs or req.top_logprobs:
        body["logprobs"] = True
    if req.top_logprobs:
        body["top_logprobs"] = req.top_logprobs
    body.update(prompt.options.body())
    return body


class ToolCallDeltas:
    """Assembles streamed ``delta.tool_calls`` fragments into whole calls, per choice."""

    def __init__(self) -> None:
        self.calls: dict[int, dict[str, str]] = {}

    def add(self, deltas: Any) -> None:
        """Merge one chunk's ``tool_calls`` list."""
        for d in deltas or ():
            slot = self.calls.setdefault(int(d.get("index", len(self.calls))),
                                         {"id": "", "name": "", "arguments": ""})
            fn = d.get("function") or {}
            slot["id"] = d.get("id") or slot["id"]
            slot["name"] += fn.get("name") or ""
            slot["arguments"] += fn.get("arguments") or ""

    def done(self) -> tuple[ToolCall, ...]:
        """The calls, in index order."""
        return tuple(ToolCall(id=c["id"], name=c["name"], arguments=c["arguments"] or "{}")
                     for _, c in sorted(self.calls.items()) if c["name"])


def top_dict(items: Any) -> dict[str, float]:
    """``{token: logprob}`` from an OpenAI-style ``top_logprobs`` list (or dict)."""
    if isinstance(items, dict):
        return {str(k): float(v) for k, v in items.items()}
    out: dict[str, float] = {}
    for item in items or ():
        token = str(item.get("token", ""))
        out[token] = max(out.get(token, -math.inf), float(item["logprob"]))
    return out
