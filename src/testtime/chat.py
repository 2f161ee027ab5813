"""Chat-level reading of model output: tool calls, their canonical form, and thinking.

A tool call's canonical form (name plus arguments as normalised JSON) is its answer, so the
voting strategies count agreeing calls together exactly as they count equal numbers; the
``tool:`` prefix keeps a call from ever matching a text answer.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

from testtime.types import ChatOptions, ToolCall

TOOL_PREFIX = "tool:"
_TAGGED = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)
_THINK_OPEN = re.compile(r"^\s*<think>\s*", re.DOTALL)
_THINK_CLOSE = "</think>"


def tool_names(options: ChatOptions) -> set[str]:
    """The functions a request lets the model call (``tool_choice`` narrows ``tools``)."""
    if options.tool_choice == "none":
        return set()
    names = {str((t.get("function") or {}).get("name")) for t in options.tools
             if isinstance(t, dict) and t.get("type", "function") == "function"}
    choice = options.tool_choice
    if isinstance(choice, dict):
        forced = (choice.get("function") or {}).get("name")
        if forced:
            names &= {str(forced)}
    return names


def forced_call_format(options: ChatOptions) -> dict[str, Any] | None:
    """A ``json_schema`` response format that admits only a call to an allowed tool.

    For engines without tool-call parsing of their own: when ``tool_choice`` demands a call
    (``required`` or a named function), constraining the output to
    ``{"name": …, "arguments": {…}}`` with the engine's grammar support makes the reply a
    call, which :func:`parse_tool_calls` then reads. None when no call is demanded.
    """
    choice = options.tool_choice
    if not (choice == "required" or isinstance(choice, dict)) or options.response_format:
        return None
    names = tool_names(options)
    variants = []
    for tool in options.tools:
        fn = tool.get("function") or {}
        if fn.get("name") not in names:
            continue
        params = fn.get("parameters") or {"type": "object"}
        variants.append({"type": "object", "properties": {
            "name": {"type": "string", "enum": [fn["name"]]}, "arguments": params},
            "required": ["name", "arguments"]})
    if not variants:
        return None
    schema = variants[0] if len(variants) == 1 else {"anyOf": variants}
    return {"type": "json_schema", "json_schema": {"name": "tool_call", "schema": schema}}


def call_id(name: str, arguments: str, index: int) -> str:
    """A stable id for a parsed call (the same call in two samples gets the same id)."""
    digest = hashlib.sha256(f"{index}:{name}:{arguments}".encode()).hexdigest()[:24]
    return f"call_{digest}"


def normalise_arguments(arguments: Any) -> str | None:
    """Arguments as compact JSON with sorted keys; None if they are not a JSON object."""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            return None
    if not isinstance(arguments, dict):
        return None
    return json.dumps(arguments, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _call_from(obj: Any, names: set[str]) -> tuple[str, str] | None:
    if not isinstance(obj, dict):
        return None
    inner = obj.get("function")
    fn: dict[str, Any] = inner if isinstance(inner, dict) else obj
    name = fn.get("name")
    if not isinstance(name, str) or name not in names:
        return None
    args = normalise_arguments(fn.get("arguments", fn.get("parameters", {})))
    return None if args is None else (name, args)


def _json_objects(text: str) -> Iterable[Any]:
    """Every JSON value that starts at a ``{`` or ``[`` in ``text``, outermost first."""
    decoder = json.JSONDecoder()
    i = 0
    while i < len(text):
        if text[i] in "{[":
            try:
                value, end = decoder.raw_decode(text, i)
            except ValueError:
                i += 1
                continue
            yield value
            i = end
        else:
            i += 1


def parse_tool_calls(text: str, options: ChatOptions) -> tuple[ToolCall, ...]:
    """Tool calls written in a completion's text, for engines that left them unparsed.

    Reads Hermes/Qwen ``<tool_call>{…}</tool_call>`` blocks, else JSON objects (bare or
    fenced, alone or in a list) whose ``name`` is one of the request's tools. Only calls to
    declared tools with object arguments count, so prose that happens to hold JSON does not.
    """
    names = tool_names(options)
    if not names or not text:
        return ()
    tagged = _TAGGED.findall(text)
    sources = tagged if tagged else [text]
    found: list[tuple[str, str]] = []
    for source in sources:
        for value in _json_objects(source):
            items = value if isinstance(value, list) else [value]
            found += [c for c in (_call_from(item, names) for item in items) if c]
    if options.parallel_tool_calls is False:
        found = found[:1]
    return tuple(ToolCall(id=call_id(n, a, i), name=n, arguments=a)
                 for i, (n, a) in enumerate(found))


def canonical_calls(calls: Sequence[ToolCall]) -> str | None:
    """The answer a list of tool calls stands for: ``tool:`` + normalised JSON, or None."""
    if not calls:
        return None
    items = []
    for c in calls:
        args = normalise_arguments(c.arguments)
        items.append({"name": c.name, "arguments": json.loads(args) if args else c.arguments})
    return TOOL_PREFIX + json.dumps(items, sort_keys=True, separators=(",", ":"),
                                    ensure_ascii=False)


def is_tool_answer(answer: str | None) -> bool:
    """Whether an answer is a canonical tool call rather than a text answer."""
    return answer is not None and answer.startswith(TOOL_PREFIX)


def split_reasoning(text: str) -> tuple[str | None, str]:
    """``(thinking, reply)`` of a text whose thinking ends with ``</think>``.

    A text without ``</think>`` has no thinking. An opening ``<think>`` is optional, since
    many reasoning templates open it in the prompt.
    """
    if _THINK_CLOSE not in text:
        return None, text
    thinking, _, reply = text.partition(_THINK_CLOSE)
    return _THINK_OPEN.sub("", thinking).strip(), reply.lstrip()
