"""Turn OpenAI request bodies into testtime Problems."""

from __future__ import annotations

import uuid
from typing import Literal

from testtime.serve.errors import ApiError
from testtime.serve.schemas import ChatCompletionRequest, ChatMessage, CompletionRequest
from testtime.types import ChatOptions, Message, Problem, ToolCall


def message_text(message: ChatMessage, index: int) -> str:
    """The plain text of a message; non-text content parts are refused with a 400."""
    if message.content is None:
        return ""
    if isinstance(message.content, str):
        return message.content
    pieces = []
    for part in message.content:
        if part.type != "text" or part.text is None:
            raise ApiError(400, f"messages[{index}]: content part of type {part.type!r} is not "
                           "supported; send text", "unsupported_content", f"messages.{index}")
        pieces.append(part.text)
    return "".join(pieces)


def chat_options(req: ChatCompletionRequest) -> ChatOptions:
    """The tools, tool choice and response format of a chat request."""
    tools = tuple(t.model_dump(exclude_none=True) for t in req.tools or ())
    choice = req.tool_choice
    if choice is not None and not isinstance(choice, str):
        names = {t.function.name for t in req.tools or ()}
        if choice.function.name not in names:
            raise ApiError(400, f"tool_choice names function {choice.function.name!r}, which "
                           "is not in tools", "invalid_request", "tool_choice")
    wants_call = choice == "required" or (choice is not None and not isinstance(choice, str))
    if wants_call and not tools:
        raise ApiError(400, "tool_choice asks for a tool call but the request has no tools",
                       "invalid_request", "tool_choice")
    fmt = req.response_format
    response_format = None
    if fmt is not None and fmt.type != "text":
        if fmt.type == "json_schema" and (fmt.json_schema is None
                                          or fmt.json_schema.json_schema is None):
            raise ApiError(400, "response_format of type json_schema needs json_schema.schema",
                           "invalid_request", "response_format.json_schema")
        response_format = fmt.model_dump(exclude_none=True, by_alias=True)
    return ChatOptions(
        tools=tools,
        tool_choice=(choice if isinstance(choice, str) or choice is None
                     else choice.model_dump()),
        parallel_tool_calls=req.parallel_tool_calls if tools else None,
        response_format=response_format)


def chat_messages(req: ChatCompletionRequest) -> tuple[Message, ...]:
    """The conversation as testtime Messages, every turn kept in order.

    System and developer messages are joined into one leading system message (chat templates
    accept a system message only first); assistant tool calls and tool results are kept.
    """
    system: list[str] = []
    turns: list[Message] = []
    for i, m in enumerate(req.messages):
        text = message_text(m, i)
        if m.role in ("system", "developer"):
            if text:
                system.append(text)
            continue
        calls = tuple(ToolCall(id=c.id, name=c.function.name, arguments=c.function.arguments)
                      for c in m.tool_calls or ()) if m.role == "assistant" else ()
        if m.role == "tool" and not m.tool_call_id:
            raise ApiError(400, f"messages[{i}]: a tool message needs tool_call_id",
                           "missing_required_parameter", f"messages.{i}.tool_call_id")
        role: Literal["user", "assistant", "tool"] = (
            "tool" if m.role == "tool" else "assistant" if m.role == "assistant" else "user")
        turns.append(Message(role=role, content=text, tool_calls=calls,
                             tool_call_id=m.tool_call_id if m.role == "tool" else None,
                             name=m.name if m.role == "tool" else None))
    head = (Message(role="system", content="\n\n".join(system)),) if system else ()
    return head + tuple(turns)


def chat_problem(req: ChatCompletionRequest) -> Problem:
    """The Problem for a chat request: the whole conversation, rendered by the backend with
    the model's own chat template.

    ``question`` (what judges and universal self-consistency show as the question) is the
    last user message.
    """
    messages = chat_messages(req)
    users = [i for i, m in enumerate(req.messages) if m.role == "user"]
    if not users:
        raise ApiError(400, "messages must contain at least one user message",
                       "invalid_request", "messages")
    last = users[-1]
    if req.messages[-1].role == "user" and not message_text(req.messages[last], last).strip():
        raise ApiError(400, f"messages[{last}]: the last user message is empty",
                       "invalid_request", f"messages.{last}.content")
    system = next((m.content for m in messages if m.role == "system"), None)
    return Problem(id=new_id("chat"), question=message_text(req.messages[last], last),
                   kind="text", system=system, messages=messages, options=chat_options(req))


def completion_problems(req: CompletionRequest) -> list[Problem]:
    """One Problem per prompt of a completions request."""
    prompts = [req.prompt] if isinstance(req.prompt, str) else list(req.prompt)
    if not prompts:
        raise ApiError(400, "prompt must not be an empty list", "invalid_request", "prompt")
    problems = []
    for i, text in enumerate(prompts):
        if not text.strip():
            raise ApiError(400, f"prompt[{i}] is empty", "invalid_request", "prompt")
        problems.append(Problem(id=new_id("cmpl"), question=text, kind="text"))
    return problems


def new_id(prefix: str) -> str:
    """An OpenAI-style object id."""
    return f"{prefix}-{uuid.uuid4().hex[:24]}"
