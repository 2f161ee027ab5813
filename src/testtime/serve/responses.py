"""OpenAI response bodies and stream chunks built from testtime Results."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

from testtime.chat import split_reasoning
from testtime.types import Candidate, Completion, Result, Usage

Kind = Literal["chat", "completion"]


def usage_body(usage: Usage, samples: int) -> dict[str, Any]:
    """OpenAI ``usage`` counting every token the request caused.

    ``completion_tokens`` is generated tokens over all samples plus verifier tokens, so
    ``total_tokens = prompt_tokens + completion_tokens`` holds and bills everything; the split
    is in the ``testtime`` extension.
    """
    completion = usage.generated_tokens + usage.verifier_tokens
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": usage.prompt_tokens + completion,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
        "testtime": {
            "generated_tokens": usage.generated_tokens,
            "verifier_tokens": usage.verifier_tokens,
            "verifier_prompt_tokens": usage.verifier_prompt_tokens,
            "verifier_generated_tokens": usage.verifier_generated_tokens,
            "samples": samples,
            "calls": usage.calls,
            "verifier_calls": usage.verifier_calls,
            "verifier_passes": usage.verifier_passes,
            "cut_calls": usage.cut_calls,
            "stopped_traces": usage.stopped_traces,
            "stopped_tokens": usage.stopped_tokens,
            "sandbox_runs": usage.sandbox_runs,
            "sandbox_seconds": round(usage.sandbox_seconds, 4),
            "tool_runs": usage.tool_runs,
            "tool_seconds": round(usage.tool_seconds, 4),
            "seconds": round(usage.seconds, 4),
            "flops": usage.flops if usage.flops_known else None,
            "verifier_flops": usage.verifier_flops if usage.flops_known else None,
            "counted_by": list(usage.counted_by),
        },
    }


def reply_text(result: Result) -> str:
    """The chosen candidate's full text; the first candidate's when no answer was chosen."""
    if result.text is not None:
        return result.text
    return result.candidates[0].text if result.candidates else ""


def chosen(result: Result) -> Candidate | None:
    """The candidate whose text is the reply (None when nothing was sampled)."""
    text = reply_text(result)
    return next((c for c in result.candidates if c.text == text), None)


def finish_reason(result: Result) -> str:
    """``tool_calls``, ``stop`` or ``length`` for the chosen candidate (``length`` when
    nothing was sampled)."""
    c = chosen(result)
    if c is None:
        return "length"
    if c.completion.tool_calls:
        return "tool_calls"
    return "length" if c.completion.finish_reason == "length" else "stop"


def tool_calls_body(completion: Completion, delta: bool = False) -> list[dict[str, Any]]:
    """OpenAI ``tool_calls`` of a completion (with ``index`` for stream deltas)."""
    out = []
    for i, call in enumerate(completion.tool_calls):
        item: dict[str, Any] = {"id": call.id or f"call_{i}", "type": "function",
                                "function": {"name": call.name, "arguments": call.arguments}}
        if delta:
            item["index"] = i
        out.append(item)
    return out


def logprobs_body(completion: Completion | None) -> dict[str, Any] | None:
    """OpenAI chat ``logprobs`` of a completion, or None when it carries none."""
    if completion is None or completion.logprobs is None:
        return None
    tokens = completion.tokens or ("",) * len(completion.logprobs)
    tops = completion.top_logprobs or ()
    content = []
    for i, (token, lp) in enumerate(zip(tokens, completion.logprobs, strict=False)):
        alts = tops[i] if i < len(tops) else {}
        content.append({
            "token": token, "logprob": lp, "bytes": list(token.encode()),
            "top_logprobs": [{"token": t, "logprob": v, "bytes": list(t.encode())}
                             for t, v in sorted(alts.items(), key=lambda kv: -kv[1])]})
    return {"content": content, "refusal": None}


def message_body(result: Result) -> dict[str, Any]:
    """The assistant message of a chat reply: content or tool calls, and thinking apart.

    Thinking goes in ``reasoning_content`` and ``reasoning`` (both names, as llama.cpp and
    vLLM emit them); a reply that calls tools has null content, as OpenAI's does.
    """
    c = chosen(result)
    thinking, content = split_reasoning(reply_text(result))
    if c is not None and c.completion.reasoning:
        thinking = c.completion.reasoning + (f"\n{thinking}" if thinking else "")
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if c is not None and c.completion.tool_calls:
        message["content"] = None
        message["tool_calls"] = tool_calls_body(c.completion)
    if thinking:
        message["reasoning_content"] = message["reasoning"] = thinking
    return message


ADAPTIVE_KEYS = ("choice", "choice_spec", "predicted_bin", "probe_statistic", "features",
                 "policy_budget")
"""What ``adaptive`` (auto@MODEL) reports of its decision in every reply."""


def details_body(result: Result, full: bool) -> dict[str, Any]:
    """The ``testtime`` extension of a choice: strategy and answer, plus evidence if asked."""
    out: dict[str, Any] = {"strategy": result.strategy, "answer": result.answer,
                           "budget_exhausted": result.budget_exhausted}
    if "aggregation" in result.extra:
        out["aggregation"] = result.extra["aggregation"]
    if "choice" in result.extra:
        out["adaptive"] = {k: result.extra[k] for k in ADAPTIVE_KEYS if k in result.extra}
    if full:
        out["votes"] = result.votes
        out["candidates"] = [
            {"text": c.text, "answer": c.answer,
             "tool_calls": tool_calls_body(c.completion) or None,
             "score": c.score.value if c.score else None,
             "steps": list(c.score.steps) if c.score and c.score.steps else None,
             "generated_tokens": c.completion.generated_tokens,
             "finish_reason": c.completion.finish_reason}
            for c in result.candidates
        ]
        out["usage"] = usage_body(result.usage, len(result.candidates))["testtime"]
    return out


@dataclass
class Reply:
    """Shared identity of one response: id, model, creation time and endpoint kind."""

    kind: Kind
    id: str
    model: str
    details: bool = False
    logprobs: bool = False
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def object(self) -> str:
        return "chat.completion" if self.kind == "chat" else "text_completion"

    def body(self, results: list[Result]) -> dict[str, Any]:
        """The full non-streamed response for ``results`` (one choice each)."""
        choices = []
        for i, r in enumerate(results):
            choice: dict[str, Any] = {"index": i, "finish_reason": finish_reason(r),
                                      "logprobs": None}
            if self.logprobs:
                c = chosen(r)
                choice["logprobs"] = logprobs_body(c.completion if c else None)
            if self.kind == "chat":
                choice["message"] = message_body(r)
            else:
                choice["text"] = reply_text(r)
            choice["testtime"] = details_body(r, self.details)
            choices.append(choice)
        usage = Usage.total([r.usage for r in results])
        samples = sum(len(r.candidates) for r in results)
        return {"id": self.id, "object": self.object, "created": self.created,
                "model": self.model, "choices": choices, "usage": usage_body(usage, samples),
                "system_fingerprint": None}

    def chunk(self, text: str | None = None, *, index: int = 0, first: bool = False,
              finish: str | None = None, extra: dict[str, Any] | None = None,
              delta: dict[str, Any] | None = None, logprobs: dict[str, Any] | None = None
              ) -> dict[str, Any]:
        """One streamed chunk carrying ``text`` (or other ``delta`` fields) or a finish
        reason."""
        choice: dict[str, Any] = {"index": index, "finish_reason": finish,
                                  "logprobs": logprobs}
        if self.kind == "chat":
            body: dict[str, Any] = {"role": "assistant"} if first else {}
            if text is not None:
                body["content"] = text
            body.update(delta or {})
            choice["delta"] = body
        else:
            choice["text"] = text or ""
        if extra is not None:
            choice["testtime"] = extra
        obj = "chat.completion.chunk" if self.kind == "chat" else "text_completion"
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model,
                "choices": [choice]}

    def usage_chunk(self, results: list[Result]) -> dict[str, Any]:
        """The final chunk with no choices and the request's usage (``include_usage``)."""
        usage = Usage.total([r.usage for r in results])
        obj = "chat.completion.chunk" if self.kind == "chat" else "text_completion"
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model,
                "choices": [],
                "usage": usage_body(usage, sum(len(r.candidates) for r in results))}
