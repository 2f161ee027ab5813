"""Turn OpenAI request bodies into testtime Problems."""

from __future__ import annotations

import uuid

from testtime.serve.errors import ApiError
from testtime.serve.schemas import ChatCompletionRequest, ChatMessage, CompletionRequest
from testtime.types import Problem


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


def chat_problem(req: ChatCompletionRequest) -> Problem:
    """The Problem for a chat request.

    The question is the last user message; system and developer messages become the system
    prompt. Earlier turns, if any, are kept in front of the question as a transcript, since a
    Problem carries one question.
    """
    texts = [message_text(m, i) for i, m in enumerate(req.messages)]
    system = "\n\n".join(t for m, t in zip(req.messages, texts, strict=True)
                         if m.role in ("system", "developer") and t)
    users = [i for i, m in enumerate(req.messages) if m.role == "user"]
    if not users:
        raise ApiError(400, "messages must contain at least one user message",
                       "invalid_request", "messages")
    last = users[-1]
    history = [f"{m.role}: {t}" for m, t in zip(req.messages[:last], texts[:last], strict=True)
               if m.role in ("user", "assistant", "tool") and t]
    question = texts[last]
    if history:
        question = "Conversation so far:\n" + "\n".join(history) + "\n\nuser: " + question
    if not question.strip():
        raise ApiError(400, f"messages[{last}]: the last user message is empty",
                       "invalid_request", f"messages.{last}.content")
    return Problem(id=new_id("chat"), question=question, kind="text", system=system or None)


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
