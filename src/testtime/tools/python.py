"""The ``python`` tool: run a short program in the code sandbox and show what it printed.

The program runs through the calling run's :meth:`~testtime.tools.base.ToolEnv.execute`
(``Context.execute``): the boxes, limits and honest statuses of code verification, no network,
billed as a sandbox run. A program that raises, loops past its limits, floods its output or
crashes is a failed tool call whose output (the traceback's tail, or why the box ended) the
model reads; it is never a failed request. The limits are the operator's
(``python:timeout=10,memory_mb=256``), never the model's or a request's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from testtime.code.sandbox import Limits, Mode, resolve_mode
from testtime.code.settings import LimitOptions
from testtime.registry import OPERATOR, SpecError, describe
from testtime.tools.base import Tool, ToolEnv, ToolResult


class PythonArguments(BaseModel):
    """The python tool's one argument."""

    model_config = ConfigDict(extra="forbid")

    code: Annotated[str, Field(description="a Python program that prints its result")]


class PythonSettings(LimitOptions):
    """The operator's options of the python tool: the sandbox's limits and box (any box,
    ``process`` too, since the operator's configuration is trusted)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sandbox: Annotated[Mode, OPERATOR] = Field(
        default="auto", description="the box (auto never picks the unisolated process box)")


class PythonTool(Tool):
    """Runs a Python program in the code sandbox; its output is what it printed."""

    name = "python"
    description = ("Run a short Python program in a sandbox (no network, no files kept) and "
                   "return what it printed. Print the result.")
    Arguments = PythonArguments

    def __init__(self, settings: PythonSettings | None = None) -> None:
        self.settings = settings or PythonSettings()

    @property
    def limits(self) -> Limits:
        """The per-program limits of these settings."""
        return self.settings.limits

    def configured(self, options: Mapping[str, str]) -> PythonTool:
        """The python tool with the operator's limits."""
        try:
            return PythonTool(PythonSettings.model_validate(dict(options)))
        except ValidationError as exc:
            raise SpecError(f"invalid python tool options: {describe(exc, PythonSettings)}")\
                from None

    def check(self) -> None:
        """Raise (SandboxError) where no sandbox can run programs."""
        resolve_mode(self.settings.sandbox)

    async def invoke(self, args: Any, env: ToolEnv) -> ToolResult:
        """Run the program in the sandbox; a failed run is a failed call showing why."""
        [run] = await env.execute([args.code], self.limits, self.settings.sandbox, 1)
        return ToolResult(ok=run.ok, output=run.feedback(), value=run.result)
