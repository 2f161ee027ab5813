"""Tools by name: the built-ins, what a library user registers, and what an operator enables.

``tools`` holds every tool known in this process: the built-ins (``python``, ``calculator``)
and any callable registered with :func:`register_tool` (a call or a decorator). A strategy run
from Python or the CLI may use all of them; the gateway offers only what its operator enables
(:func:`enable`), since a request may choose a tool by name but never define one.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, overload

from testtime.registry import SpecError, split_spec
from testtime.tools.base import Tool
from testtime.tools.calculator import Calculator
from testtime.tools.function import DEFAULT_TIMEOUT, FunctionTool
from testtime.tools.python import PythonTool

F = TypeVar("F", bound=Callable[..., Any])


class ToolRegistry:
    """Maps names to tools (instances, since a registered callable is one)."""

    kind = "tool"

    def __init__(self) -> None:
        self._items: dict[str, Tool] = {}

    def register(self, tool: Tool) -> Tool:
        """Add ``tool`` under its name (the same name twice, for another tool, is an error)."""
        have = self._items.get(tool.name)
        if have is not None and have is not tool:
            raise ValueError(f"tool {tool.name!r} registered twice")
        self._items[tool.name] = tool
        return tool

    def get(self, name: str) -> Tool:
        """The tool named ``name``; a SpecError lists the known names otherwise."""
        try:
            return self._items[name]
        except KeyError:
            raise SpecError(f"unknown tool {name!r}; known: "
                            f"{', '.join(self.names()) or 'none'}") from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._items)

    def all(self) -> dict[str, Tool]:
        """Every registered tool, by name."""
        return dict(self._items)

    def remove(self, name: str) -> None:
        """Forget ``name`` (a tool a test registered for itself)."""
        self._items.pop(name, None)


tools = ToolRegistry()
tools.register(Calculator())
tools.register(PythonTool())


@overload
def register_tool(fn: F, *, name: str | None = None, description: str | None = None,
                  timeout: float = DEFAULT_TIMEOUT) -> F: ...
@overload
def register_tool(fn: None = None, *, name: str | None = None, description: str | None = None,
                  timeout: float = DEFAULT_TIMEOUT) -> Callable[[F], F]: ...
def register_tool(fn: Any = None, *, name: str | None = None, description: str | None = None,
                  timeout: float = DEFAULT_TIMEOUT) -> Any:
    """Register a Python callable as a tool, as ``register_tool(fn)`` or as a decorator
    (``@register_tool`` or ``@register_tool(name=..., description=...)``); the function is
    returned unchanged. Its schema comes from its signature, its description from its
    docstring's first paragraph."""
    def deco(f: F) -> F:
        tools.register(FunctionTool(f, name=name, description=description, timeout=timeout))
        return f

    return deco if fn is None else deco(fn)


def load(entry: str) -> Tool:
    """The tool an operator's ``entry`` names: a registered name, with options where the tool
    takes them (``python:timeout=10``), or a ``module:function`` to import (a callable, or a
    Tool object)."""
    name, colon, rest = entry.strip().partition(":")
    if colon and rest.strip() and "=" not in rest:
        return imported(name.strip(), rest.strip())
    name, options = split_spec(entry)
    return tools.get(name).configured(options)


def imported(module: str, attribute: str) -> Tool:
    """The tool at ``module:attribute``: a Tool as is, a callable made into one."""
    try:
        obj: Any = importlib.import_module(module)
    except ImportError as exc:
        raise SpecError(f"cannot import tool module {module!r}: {exc}") from None
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise SpecError(f"module {module!r} has no {attribute!r}") from None
    if isinstance(obj, Tool):
        return obj
    try:
        return FunctionTool(obj)
    except TypeError as exc:
        raise SpecError(f"{module}:{attribute} cannot be a tool: {exc}") from None


def enable(entries: Iterable[str]) -> dict[str, Tool]:
    """The tools an operator enables, by name, each checked (``python`` needs a sandbox);
    SpecError for an unknown, unloadable or doubly named one."""
    out: dict[str, Tool] = {}
    for entry in entries:
        tool = load(entry)
        if tool.name in out:
            raise SpecError(f"two enabled tools are named {tool.name!r}")
        try:
            tool.check()
        except Exception as exc:
            raise SpecError(f"tool {tool.name!r} cannot run here: {exc}") from None
        out[tool.name] = tool
    return out
