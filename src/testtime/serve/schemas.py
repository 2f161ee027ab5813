"""Request bodies of the OpenAI endpoints the gateway serves (validated, documented in OpenAPI).

Every field that changes the answer is honoured or refused: those declared here are honoured
(or refused for a strategy that cannot honour them, by the endpoint), and the OpenAI fields in
:data:`UNSUPPORTED` are refused when set to anything but their neutral value. Fields that do
not change the answer (``user``, ``metadata``, ``store``, ...) are accepted and ignored.
testtime's own options travel in the ``testtime`` object, which the openai client sends with
``extra_body={"testtime": {...}}``. The sampler settings ``top_p``, ``top_k``, ``min_p`` and
``repeat_penalty`` reach the strategy (unset ones keep the engine's defaults) within the
operator's ``client_limits``.

Validation is strict, as OpenAI's is: no coercion (``"n": "2"``, ``"n": true`` and
``"stream": "yes"`` are refused), and numbers must be finite.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from testtime.types import Sampling

UNSUPPORTED: dict[str, tuple[Any, ...]] = {
    "frequency_penalty": (0, 0.0, None),
    "presence_penalty": (0, 0.0, None),
    "logit_bias": (None, {}),
    "functions": (None, []),
    "function_call": (None, "none", "auto"),
    "audio": (None,),
    "modalities": (None, ["text"]),
    "prediction": (None,),
    "web_search_options": (None,),
    "suffix": (None, ""),
    "echo": (None, False),
    "best_of": (None, 1),
}


class TesttimeOptions(BaseModel):
    """testtime's extension of a request: strategy, details in the reply, a tighter budget."""

    model_config = ConfigDict(extra="forbid", strict=True)

    strategy: str | None = Field(default=None, max_length=512,
                                 description="strategy spec, e.g. self-consistency:n=8")
    details: bool = Field(default=False,
                          description="return candidates, votes and scores in `testtime`")
    budget: str | None = Field(default=None, max_length=256,
                               description="per-request budget, capped by the server's")
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)
    progress: bool = Field(default=False, description="when streaming, send progress chunks "
                           "(samples finished, current leader and its votes, tokens spent)")


class StreamOptions(BaseModel):
    """OpenAI ``stream_options``."""

    model_config = ConfigDict(extra="ignore", strict=True)

    include_usage: bool = False


class ContentPart(BaseModel):
    """One part of a message's content; only ``text`` parts are understood."""

    model_config = ConfigDict(extra="ignore", strict=True)

    type: str = Field(max_length=64)
    text: str | None = None


class FunctionCall(BaseModel):
    """The function an assistant turn called, with its JSON-encoded arguments."""

    model_config = ConfigDict(extra="ignore", strict=True)

    name: str = Field(min_length=1, max_length=64)
    arguments: str = Field(default="{}", max_length=65536)


class ToolCallIn(BaseModel):
    """A tool call of an earlier assistant turn."""

    model_config = ConfigDict(extra="ignore", strict=True)

    id: str = Field(default="", max_length=256)
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    """One chat message as OpenAI clients send it."""

    model_config = ConfigDict(extra="ignore", strict=True)

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = Field(default=None, max_length=256)
    tool_calls: list[ToolCallIn] | None = Field(default=None, max_length=128)
    tool_call_id: str | None = Field(default=None, max_length=256)


class FunctionDef(BaseModel):
    """A function the model may call: name, description and JSON Schema of its arguments."""

    model_config = ConfigDict(extra="ignore", strict=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = Field(default=None, max_length=8192)
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(BaseModel):
    """One entry of ``tools``."""

    model_config = ConfigDict(extra="ignore", strict=True)

    type: Literal["function"]
    function: FunctionDef


class NamedFunction(BaseModel):
    """The function a named ``tool_choice`` forces."""

    model_config = ConfigDict(extra="ignore", strict=True)

    name: str = Field(min_length=1, max_length=64)


class NamedToolChoice(BaseModel):
    """``tool_choice`` naming one function."""

    model_config = ConfigDict(extra="ignore", strict=True)

    type: Literal["function"]
    function: NamedFunction


class JsonSchemaFormat(BaseModel):
    """The schema of a ``json_schema`` response format."""

    model_config = ConfigDict(extra="ignore", strict=True, populate_by_name=True)

    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    json_schema: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    """``response_format``: plain text, any JSON object, or JSON following a schema."""

    model_config = ConfigDict(extra="ignore", strict=True)

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class _Common(Sampling):
    model_config = ConfigDict(extra="allow", strict=True, allow_inf_nan=False, frozen=False)

    model: str = Field(min_length=1, max_length=512)
    max_tokens: int | None = Field(default=None, ge=1, le=131072)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    n: int = Field(default=1, ge=1, le=128)
    stream: bool = False
    stream_options: StreamOptions | None = None
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    stop: str | list[str] | None = Field(default=None, description="up to 4 stop strings")
    testtime: TesttimeOptions | None = None

    def stops(self) -> tuple[str, ...]:
        """The stop strings as a tuple."""
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)
    def sampling(self) -> Sampling:
        """The sampler settings this request chose."""
        return Sampling.of(self)


class ChatCompletionRequest(_Common):
    """Body of ``POST /v1/chat/completions``."""

    messages: list[ChatMessage] = Field(min_length=1, max_length=1024)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=131072)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    tools: list[Tool] | None = Field(default=None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high"] | None = None


class CompletionRequest(_Common):
    """Body of ``POST /v1/completions``."""

    prompt: str | list[str] = Field(description="one prompt, or a list (one choice each)")
