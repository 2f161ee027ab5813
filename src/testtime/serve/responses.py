"""OpenAI response bodies and stream chunks built from testtime Results."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

from testtime.types import Result, Usage

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


def finish_reason(result: Result) -> str:
    """``stop`` or ``length`` for the chosen candidate (``length`` when nothing was sampled)."""
    text = reply_text(result)
    chosen = next((c for c in result.candidates if c.text == text), None)
    if chosen is None:
        return "length"
    return "length" if chosen.completion.finish_reason == "length" else "stop"


def details_body(result: Result, full: bool) -> dict[str, Any]:
    """The ``testtime`` extension of a choice: strategy and answer, plus evidence if asked."""
    out: dict[str, Any] = {"strategy": result.strategy, "answer": result.answer,
                           "budget_exhausted": result.budget_exhausted}
    if full:
        out["votes"] = result.votes
        out["candidates"] = [
            {"text": c.text, "answer": c.answer,
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
            if self.kind == "chat":
                choice["message"] = {"role": "assistant", "content": reply_text(r)}
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
              finish: str | None = None, extra: dict[str, Any] | None = None
              ) -> dict[str, Any]:
        """One streamed chunk carrying ``text`` or a finish reason."""
        choice: dict[str, Any] = {"index": index, "finish_reason": finish, "logprobs": None}
        if self.kind == "chat":
            delta: dict[str, Any] = {"role": "assistant"} if first else {}
            if text is not None:
                delta["content"] = text
            choice["delta"] = delta
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
