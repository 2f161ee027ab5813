"""Request bodies of the OpenAI endpoints the gateway serves (validated, documented in OpenAPI).

The sampler settings ``top_p``, ``top_k``, ``min_p`` and ``repeat_penalty`` reach the strategy
(unset ones keep the engine's defaults). Other unknown OpenAI fields (``stop``, ``user``,
penalties, ...) are accepted and ignored so standard clients work; testtime's own options
travel in the ``testtime`` object, which the openai client sends with
``extra_body={"testtime": {...}}``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from testtime.types import Sampling


class TesttimeOptions(BaseModel):
    """testtime's extension of a request: strategy, details in the reply, a tighter budget."""

    model_config = ConfigDict(extra="forbid")

    strategy: str | None = Field(default=None, max_length=512,
                                 description="strategy spec, e.g. self-consistency:n=8")
    details: bool = Field(default=False,
                          description="return candidates, votes and scores in `testtime`")
    budget: str | None = Field(default=None, max_length=256,
                               description="per-request budget, capped by the server's")
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)


class StreamOptions(BaseModel):
    """OpenAI ``stream_options``."""

    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class ContentPart(BaseModel):
    """One part of a message's content; only ``text`` parts are understood."""

    model_config = ConfigDict(extra="ignore")

    type: str = Field(max_length=64)
    text: str | None = None


class ChatMessage(BaseModel):
    """One chat message as OpenAI clients send it."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = Field(default=None, max_length=256)


class _Common(Sampling):
    model_config = ConfigDict(extra="allow", frozen=False)

    model: str = Field(min_length=1, max_length=512)
    max_tokens: int | None = Field(default=None, ge=1, le=131072)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    n: int = Field(default=1, ge=1, le=128)
    stream: bool = False
    stream_options: StreamOptions | None = None
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    testtime: TesttimeOptions | None = None

    def sampling(self) -> Sampling:
        """The sampler settings this request chose."""
        return Sampling.of(self)


class ChatCompletionRequest(_Common):
    """Body of ``POST /v1/chat/completions``."""

    messages: list[ChatMessage] = Field(min_length=1, max_length=1024)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=131072)


class CompletionRequest(_Common):
    """Body of ``POST /v1/completions``."""

    prompt: str | list[str] = Field(description="one prompt, or a list (one choice each)")
