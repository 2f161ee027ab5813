"""A tool made from any Python callable: its schema from the signature, its arguments checked
by pydantic before the call.

The callable's parameters (with their annotations, defaults and ``Annotated[..., Field(...)]``
descriptions) become a pydantic model, so the JSON schema the model sees and the validation
that runs before every call are one and the same. A synchronous callable runs in a worker
thread, off the event loop; a call that takes longer than ``timeout`` seconds is reported to
the model as a failure (the thread cannot be killed and finishes on its own).
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Callable
from typing import Any, get_type_hints

from pydantic import BaseModel, ConfigDict, create_model

from testtime.tools.base import Tool, ToolEnv, ToolResult

DEFAULT_TIMEOUT = 30.0


def arguments_model(fn: Callable[..., Any], name: str) -> type[BaseModel]:
    """A pydantic model of ``fn``'s parameters (no ``*args``/``**kwargs``; unannotated ones
    accept any JSON value); unknown arguments are refused."""
    hints = get_type_hints(fn, include_extras=True)
    fields: dict[str, Any] = {}
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"tool {name!r}: *args and **kwargs cannot be described to a model")
        if param.kind is param.POSITIONAL_ONLY:
            raise TypeError(f"tool {name!r}: positional-only parameters cannot be given by name")
        annotation = hints.get(param.name, Any)
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (annotation, default)
    model: type[BaseModel] = create_model(
        f"{name}_arguments", __config__=ConfigDict(extra="forbid"), **fields)
    return model


def description_of(fn: Callable[..., Any]) -> str:
    """The first paragraph of ``fn``'s docstring, on one line."""
    doc = inspect.getdoc(fn) or ""
    return " ".join(doc.split("\n\n")[0].split()) or f"the function {fn.__name__}"


def shown(value: Any) -> str:
    """A return value as the model reads it: text as is, other values as JSON if they can be."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)


class FunctionTool(Tool):
    """A tool that calls ``fn`` with the model's (validated) arguments; what it returns is the
    output, and its exceptions are errors the model reads."""

    def __init__(self, fn: Callable[..., Any], name: str | None = None,
                 description: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        if not callable(fn):
            raise TypeError(f"a tool needs a callable, not {type(fn).__name__}")
        self.fn = fn
        self.name = str(name or getattr(fn, "__name__", ""))
        if not self.name.isidentifier():
            raise TypeError(f"tool name {self.name!r} must be an identifier")
        self.description = description or description_of(fn)
        self.Arguments = arguments_model(fn, self.name)
        self.timeout = timeout

    async def invoke(self, args: Any, env: ToolEnv) -> ToolResult:
        """Call the function (in a thread when it is synchronous) within ``timeout``."""
        kwargs = {k: getattr(args, k) for k in type(args).model_fields}
        try:
            if inspect.iscoroutinefunction(self.fn):
                value = await asyncio.wait_for(self.fn(**kwargs), self.timeout)
            else:
                value = await asyncio.wait_for(asyncio.to_thread(self.fn, **kwargs),
                                               self.timeout)
        except TimeoutError:
            return ToolResult.error(f"{self.name} took longer than {self.timeout:g}s")
        text = shown(value)
        return ToolResult(ok=True, output=text, value=text.strip() or None)
