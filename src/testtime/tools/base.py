"""What a tool is: a name, a description, a JSON schema of its arguments and an async call.

A tool's call never raises for what the model did wrong: arguments that are not a JSON object
or do not fit the schema, and any exception the tool raises, come back as a failed
:class:`ToolResult` whose ``output`` says why, so the model reads the error and a request
never fails because of a tool call.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from testtime.code.programs import ProgramRun
from testtime.code.sandbox import Limits, Mode
from testtime.registry import SpecError

OUTPUT_CHARS = 2000
"""Characters of a tool's output shown to the model; longer output is cut with a note."""


class ToolEnv(Protocol):
    """What a tool may use from the run that calls it: the code sandbox, billed to its ledger
    (a strategy's Context is one)."""

    async def execute(self, programs: Sequence[str], limits: Limits, mode: Mode = "auto",
                      parallel: int = 4) -> list[ProgramRun]:
        """Run ``programs`` in the code sandbox."""
        ...


@dataclass(frozen=True)
class ToolResult:
    """What one tool call gave: ``ok`` (it ran and succeeded), the ``output`` shown to the
    model, the result as a plain ``value`` when it has one (a number computed, a program's
    last printed line), and the call's wall ``seconds``."""

    ok: bool
    output: str
    value: str | None = None
    seconds: float = 0.0

    @classmethod
    def error(cls, message: str) -> ToolResult:
        """A failed call whose output is ``message``."""
        return cls(ok=False, output=f"error: {message}")


def cut(text: str, chars: int = OUTPUT_CHARS) -> str:
    """``text`` cut to ``chars`` characters, saying how much was left out."""
    if len(text) <= chars:
        return text
    return f"{text[:chars]}\n… ({len(text) - chars} more characters not shown)"


def argument_errors(exc: ValidationError) -> str:
    """One short line per invalid or missing argument."""
    parts = []
    for e in exc.errors():
        where = ".".join(str(p) for p in e["loc"]) or "arguments"
        parts.append(f"{where}: {e['msg']}")
    return "; ".join(parts)


class Tool(ABC):
    """A tool a strategy may call: ``name``, ``description``, an ``Arguments`` model (its JSON
    schema is what the model is shown) and :meth:`invoke`, which gets validated arguments."""

    name: str
    description: str
    Arguments: type[BaseModel]

    @property
    def parameters(self) -> dict[str, Any]:
        """The JSON schema of the tool's arguments."""
        schema = self.Arguments.model_json_schema()
        schema.pop("title", None)
        schema.pop("description", None)
        for prop in schema.get("properties", {}).values():
            prop.pop("title", None)
        return schema

    def schema(self) -> dict[str, Any]:
        """The tool as an OpenAI-style function declaration."""
        return {"type": "function", "function": {
            "name": self.name, "description": self.description,
            "parameters": self.parameters}}

    async def call(self, arguments: Mapping[str, Any] | str, env: ToolEnv) -> ToolResult:
        """Validate ``arguments`` (a mapping or its JSON text), run the tool, and report what
        it gave; bad arguments and the tool's own exceptions are a failed result."""
        started = time.monotonic()
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except ValueError as exc:
                return ToolResult.error(f"arguments are not valid JSON: {exc}")
        if not isinstance(arguments, Mapping):
            return ToolResult.error("arguments must be a JSON object")
        try:
            args = self.Arguments.model_validate(dict(arguments))
        except ValidationError as exc:
            return ToolResult.error(f"invalid arguments for {self.name}: "
                                    f"{argument_errors(exc)}")
        try:
            result = await self.invoke(args, env)
        except (Exception, SystemExit) as exc:
            result = ToolResult.error(f"{self.name} raised {type(exc).__name__}: {exc}")
        return ToolResult(ok=result.ok, output=cut(result.output), value=result.value,
                          seconds=time.monotonic() - started)

    @abstractmethod
    async def invoke(self, args: Any, env: ToolEnv) -> ToolResult:
        """Run the tool on validated ``args`` (an instance of ``Arguments``)."""

    def configured(self, options: Mapping[str, str]) -> Tool:
        """This tool with the operator's ``options`` (``python:timeout=10``); a tool that
        takes none refuses any."""
        if options:
            raise SpecError(f"tool {self.name!r} takes no options "
                            f"(given: {', '.join(sorted(options))})")
        return self

    def check(self) -> None:  # noqa: B027 (most tools can run anywhere)
        """Raise if the tool cannot run here (no sandbox for ``python``)."""
