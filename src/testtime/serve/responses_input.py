"""The request of ``POST /v1/responses`` (OpenAI's Responses API), mapped onto a chat request.

A Responses request is answered as the chat completions request it means, so strategies,
budgets, key shares and limits are exactly those of ``/v1/chat/completions``:
``instructions`` and the input items become the conversation; function tools and
``function_call`` / ``function_call_output`` items become tools, assistant tool calls and tool
results; ``max_output_tokens`` is ``max_completion_tokens``; ``reasoning.effort`` is
``reasoning_effort``; ``text.format`` is ``response_format``; ``testtime`` is the same extension.

The gateway stores nothing, so what refers to stored state (``previous_response_id``,
``conversation``, ``prompt``, ``item_reference`` items, ``background``) is refused, as are
hosted tools (web search, file search, ...), non-text inputs (images, files, audio) and every
field this module does not know. Errors name the Responses field (``input.2.call_id``,
``reasoning.effort``), not the chat field it became.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError

from testtime.serve.errors import ApiError
from testtime.serve.schemas import ChatCompletionRequest, TesttimeOptions
from testtime.types import Sampling

CHAT_EFFORTS = ("none", "minimal", "low", "medium", "high")
FUNCTION_NAME = r"^[A-Za-z0-9_-]{1,64}$"

STATELESS = "this gateway stores no responses; send the whole conversation in input"
UNSUPPORTED: dict[str, tuple[tuple[Any, ...], str]] = {
    "previous_response_id": ((None,), STATELESS),
    "conversation": ((None,), STATELESS),
    "prompt": ((None,), "stored prompts are not available; send instructions and input"),
    "background": ((None, False), "background responses need stored responses, which this "
                   "gateway does not keep"),
    "include": ((None, []), "this gateway includes nothing extra in a response"),
    "truncation": ((None, "disabled"), "this gateway never truncates the input; send what "
                   "fits the model's context"),
    "top_logprobs": ((None, 0), "logprobs are served by /v1/chat/completions"),
    "context_management": ((None, []), STATELESS),
    "moderation": ((None,), "this gateway runs no moderation"),
}
"""Responses fields refused when set to anything but their neutral values, and why."""

RENAMED = (("reasoning_effort", "reasoning.effort"), ("max_completion_tokens",
           "max_output_tokens"), ("max_tokens", "max_output_tokens"),
           ("response_format.json_schema", "text.format.schema"),
           ("response_format", "text.format"))
"""Chat fields as the Responses fields they came from (errors name what the client sent)."""


class InputPart(BaseModel):
    """One content part of an input item; only text parts are understood."""

    model_config = ConfigDict(extra="ignore", strict=True)

    type: str = Field(max_length=64)
    text: str | None = None
    refusal: str | None = None


def _text_or_list(item: str) -> Any:
    def pick(value: Any) -> str:
        return "str" if isinstance(value, str) else f"list[{item}]"
    return Discriminator(pick)


PartsOrText = Annotated[Annotated[str, Tag("str")]
                        | Annotated[list[InputPart], Tag("list[InputPart]")],
                        _text_or_list("InputPart")]
"""A string, or a list of content parts (only that branch's errors are reported)."""


class InputItem(BaseModel):
    """One item of ``input``: a message, a function call or a function call's output.

    One permissive shape for every item type, so that each is checked by its ``type`` with an
    error naming the item; ids, statuses and annotations that clients echo back are ignored.
    """

    model_config = ConfigDict(extra="ignore", strict=True)

    type: str = Field(default="message", max_length=64)
    role: Literal["user", "system", "developer", "assistant"] | None = None
    content: PartsOrText | None = None
    call_id: str | None = Field(default=None, max_length=256)
    name: str | None = Field(default=None, max_length=64)
    arguments: str | None = Field(default=None, max_length=65536)
    output: PartsOrText | None = None


class ResponsesTool(BaseModel):
    """One entry of ``tools``; only ``function`` tools can be served."""

    model_config = ConfigDict(extra="ignore", strict=True)

    type: str = Field(max_length=64)
    name: str | None = Field(default=None, pattern=FUNCTION_NAME)
    description: str | None = Field(default=None, max_length=8192)
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolChoiceObject(BaseModel):
    """``tool_choice`` as an object; only ``{"type": "function", "name": ...}`` is served."""

    model_config = ConfigDict(extra="ignore", strict=True)

    type: str = Field(max_length=64)
    name: str | None = Field(default=None, max_length=64)


class ReasoningConfig(BaseModel):
    """``reasoning``: ``effort`` picks the operator's preset, as chat's ``reasoning_effort``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None


class TextFormat(BaseModel):
    """``text.format``: plain text, any JSON object, or JSON following a schema."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    type: Literal["text", "json_object", "json_schema"]
    name: str | None = Field(default=None, min_length=1, max_length=64)
    description: str | None = Field(default=None, max_length=8192)
    json_schema: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class TextConfig(BaseModel):
    """``text``: the output format (``verbosity`` other than the default is refused)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class ResponsesStreamOptions(BaseModel):
    """``stream_options`` (nothing in it changes what is sent)."""

    model_config = ConfigDict(extra="ignore", strict=True)

    include_obfuscation: bool | None = None


class ResponsesRequest(Sampling):
    """Body of ``POST /v1/responses``.

    ``store``, ``user``, ``safety_identifier``, ``prompt_cache_key``, ``service_tier`` and
    ``max_tool_calls`` (which limits hosted tools, of which there are none) change nothing and
    are accepted; the fields in :data:`UNSUPPORTED` are refused unless neutral; any other
    field is refused as unknown.
    """

    model_config = ConfigDict(extra="allow", strict=True, allow_inf_nan=False)

    model: str = Field(min_length=1, max_length=512)
    input: Annotated[Annotated[str, Tag("str")]
                     | Annotated[list[InputItem], Tag("list[InputItem]")],
                     _text_or_list("InputItem")] = Field(
        description="a user message, or a list of items")
    instructions: str | None = Field(default=None, description="a leading system message")
    stream: bool = False
    stream_options: ResponsesStreamOptions | None = None
    max_output_tokens: int | None = Field(default=None, ge=1, le=131072)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    metadata: dict[str, str] | None = Field(default=None, max_length=16)
    tools: list[ResponsesTool] | None = Field(default=None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | ToolChoiceObject | None = None
    parallel_tool_calls: bool | None = None
    reasoning: ReasoningConfig | None = None
    text: TextConfig | None = None
    store: bool | None = None
    user: str | None = Field(default=None, max_length=256)
    safety_identifier: str | None = Field(default=None, max_length=256)
    prompt_cache_key: str | None = Field(default=None, max_length=256)
    prompt_cache_retention: str | None = Field(default=None, max_length=32)
    service_tier: str | None = Field(default=None, max_length=32)
    max_tool_calls: int | None = Field(default=None, ge=1)
    testtime: TesttimeOptions | None = None


def refuse_unsupported(body: ResponsesRequest) -> None:
    """400 for a field this gateway cannot honour or does not know."""
    for name, value in (body.model_extra or {}).items():
        known = UNSUPPORTED.get(name)
        if known is None:
            raise ApiError(400, f"unknown parameter {name!r} for /v1/responses",
                           "unknown_parameter", name)
        neutral, why = known
        if not any(value == n and type(value) is type(n) for n in neutral):
            raise ApiError(400, f"{name} is not supported: {why}", "unsupported_parameter",
                           name)
    if body.text is not None and body.text.verbosity not in (None, "medium"):
        raise ApiError(400, "text.verbosity is not supported; leave it unset",
                       "unsupported_parameter", "text.verbosity")
    for key, value in (body.metadata or {}).items():
        if len(key) > 64 or len(value) > 512:
            raise ApiError(400, "metadata keys are at most 64 characters and values at most "
                           "512", "invalid_request", "metadata")


def part_text(parts: str | list[InputPart] | None, where: str) -> str:
    """The text of a content (a string, or text parts); other parts are a 400."""
    if parts is None or isinstance(parts, str):
        return parts or ""
    pieces = []
    for j, part in enumerate(parts):
        text = part.refusal if part.type == "refusal" else part.text
        if part.type not in ("input_text", "output_text", "text", "refusal") or text is None:
            raise ApiError(400, f"{where}.{j}: content part of type {part.type!r} is not "
                           "supported; this gateway reads text (input_text, output_text)",
                           "unsupported_content", f"{where}.{j}")
        pieces.append(text)
    return "".join(pieces)


def conversation(body: ResponsesRequest) -> tuple[list[dict[str, Any]], list[str]]:
    """The chat messages of ``instructions`` and ``input``, and where each came from.

    A ``function_call`` item joins the assistant turn just before it (a model turn's text
    and calls are one chat message); ``reasoning`` items are dropped, as chat drops earlier
    turns' thinking.
    """
    messages: list[dict[str, Any]] = []
    origins: list[str] = []
    if body.instructions:
        messages.append({"role": "system", "content": body.instructions})
        origins.append("instructions")
    if isinstance(body.input, str):
        if not body.input.strip():
            raise ApiError(400, "input is empty", "invalid_request", "input")
        return [*messages, {"role": "user", "content": body.input}], [*origins, "input"]
    if not body.input:
        raise ApiError(400, "input must not be an empty list", "invalid_request", "input")
    if len(body.input) > 1024:
        raise ApiError(400, "input holds more than 1024 items", "invalid_request", "input")
    names: dict[str, str] = {}
    for i, item in enumerate(body.input):
        where = f"input.{i}"
        if item.type == "message":
            if item.role is None:
                raise ApiError(400, f"{where}: a message needs a role", "missing_required_"
                               "parameter", f"{where}.role")
            messages.append({"role": item.role,
                             "content": part_text(item.content, f"{where}.content")})
        elif item.type == "function_call":
            for field in ("call_id", "name"):
                if not getattr(item, field):
                    raise ApiError(400, f"{where}: a function_call needs {field}",
                                   "missing_required_parameter", f"{where}.{field}")
            call = {"id": item.call_id, "type": "function",
                    "function": {"name": item.name, "arguments": item.arguments or "{}"}}
            names[str(item.call_id)] = str(item.name)
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
                continue
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif item.type == "function_call_output":
            if not item.call_id:
                raise ApiError(400, f"{where}: a function_call_output needs call_id",
                               "missing_required_parameter", f"{where}.call_id")
            messages.append({"role": "tool", "tool_call_id": item.call_id,
                             "name": names.get(item.call_id),
                             "content": part_text(item.output, f"{where}.output")})
        elif item.type == "reasoning":
            continue
        elif item.type == "item_reference":
            raise ApiError(400, f"{where}: item references need stored items; {STATELESS}",
                           "unsupported_parameter", f"{where}.type")
        else:
            raise ApiError(400, f"{where}: input items of type {item.type!r} are not "
                           "supported; this gateway reads message, function_call and "
                           "function_call_output items", "unsupported_parameter",
                           f"{where}.type")
        origins.append(where)
    if not any(m["role"] == "user" for m in messages):
        raise ApiError(400, "input must contain at least one user message",
                       "invalid_request", "input")
    return messages, origins


def chat_tools(body: ResponsesRequest) -> dict[str, Any]:
    """``tools`` and ``tool_choice`` in chat's form; hosted tools are a 400."""
    tools = []
    for i, tool in enumerate(body.tools or ()):
        if tool.type != "function":
            raise ApiError(400, f"tools.{i}: hosted tool {tool.type!r} is not available on "
                           "this gateway; declare function tools and run them yourself",
                           "unsupported_parameter", f"tools.{i}.type")
        if tool.name is None:
            raise ApiError(400, f"tools.{i}: a function tool needs a name",
                           "missing_required_parameter", f"tools.{i}.name")
        tools.append({"type": "function", "function": tool.model_dump(
            exclude_none=True, include={"name", "description", "parameters", "strict"})})
    choice: Any = body.tool_choice
    if isinstance(choice, ToolChoiceObject):
        if choice.type != "function" or not choice.name:
            raise ApiError(400, f"tool_choice of type {choice.type!r} is not supported; use "
                           "none, auto, required or {\"type\": \"function\", \"name\": ...}",
                           "unsupported_parameter", "tool_choice")
        choice = {"type": "function", "function": {"name": choice.name}}
    return {"tools": tools or None, "tool_choice": choice,
            "parallel_tool_calls": body.parallel_tool_calls}


def response_format(body: ResponsesRequest) -> dict[str, Any] | None:
    """``text.format`` as chat's ``response_format``."""
    fmt = body.text.format if body.text else None
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return {"type": "json_object"}
    if fmt.name is None or fmt.json_schema is None:
        raise ApiError(400, "text.format of type json_schema needs name and schema",
                       "missing_required_parameter", "text.format")
    schema = {"name": fmt.name, "schema": fmt.json_schema, "description": fmt.description,
              "strict": fmt.strict}
    return {"type": "json_schema",
            "json_schema": {k: v for k, v in schema.items() if v is not None}}


def chat_effort(body: ResponsesRequest) -> str | None:
    """``reasoning.effort`` as a chat ``reasoning_effort`` level."""
    effort = body.reasoning.effort if body.reasoning else None
    if effort is not None and effort not in CHAT_EFFORTS:
        raise ApiError(400, f"reasoning.effort {effort!r} is not offered by this server",
                       "unsupported_value", "reasoning.effort")
    return effort


def rename(param: str | None, origins: list[str]) -> str | None:
    """The Responses field that a chat request's ``param`` came from (``origins``: where
    each chat message came from)."""
    if param is None:
        return None
    head, _, rest = param.partition(".")
    if head == "messages":
        index, _, tail = rest.partition(".")
        if index.isdigit() and int(index) < len(origins):
            origin = origins[int(index)]
            return origin if origin == "instructions" or not tail else f"{origin}.{tail}"
        return "input"
    if head == "tools" and rest.endswith(".function.name"):
        return param.replace(".function.name", ".name")
    for chat_name, name in RENAMED:
        if param == chat_name or param.startswith(chat_name + "."):
            return name + param[len(chat_name):]
    return param


@dataclass(frozen=True)
class Mapped:
    """A Responses request as the chat request it means, and where each message came from."""

    chat: ChatCompletionRequest
    origins: list[str]

    @contextmanager
    def renaming(self) -> Iterator[None]:
        """Errors raised meanwhile name the Responses fields, not the chat ones."""
        try:
            yield
        except ApiError as exc:
            exc.param = rename(exc.param, self.origins)
            exc.message = exc.message.replace("reasoning_effort", "reasoning.effort")
            raise


def chat_request(body: ResponsesRequest) -> Mapped:
    """The chat completions request a Responses request means (400 if it cannot be one)."""
    refuse_unsupported(body)
    messages, origins = conversation(body)
    fields: dict[str, Any] = {
        "model": body.model, "messages": messages, "stream": body.stream,
        "max_completion_tokens": body.max_output_tokens, "temperature": body.temperature,
        **Sampling.of(body).chosen(), **chat_tools(body),
        "response_format": response_format(body), "reasoning_effort": chat_effort(body),
        "testtime": body.testtime}
    try:
        chat = ChatCompletionRequest.model_validate(
            {k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        param = rename(".".join(str(p) for p in first.get("loc", ())), origins)
        raise ApiError(400, f"{param}: {first.get('msg', 'invalid value')}",
                       "invalid_request", param) from None
    return Mapped(chat, origins)
