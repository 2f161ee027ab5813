"""The code sandbox's options, declared once for everything that runs code in it.

A strategy that runs model-written programs, a verifier that runs candidates against tests
and the ``python`` tool all take the same per-program limits (wall seconds, CPU seconds,
memory) and give the same :class:`~testtime.code.sandbox.Limits`; the batch runners also take
how many programs run at once and the box. Every option is the operator's alone: a request
that sets one is refused (``operator_only_option``). A site whose defaults differ redeclares
just those options with the shared types below, so the bounds and the trust stay one.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from testtime.code.sandbox import Limits, resolve_mode
from testtime.registry import OPERATOR

Box = Literal["auto", "namespace", "userns"]
"""The boxes a strategy's or verifier's options may name; the unisolated ``process`` box is
the operator's choice only (``TESTTIME_SANDBOX=process``, or the ``python`` tool's option)."""

WallSeconds = Annotated[float, OPERATOR, Field(gt=0, le=600,
                                               description="wall seconds per program")]
"""The ``timeout`` option: wall seconds one program may run."""
CpuSeconds = Annotated[int, OPERATOR, Field(ge=1, le=600, description="CPU seconds per program")]
"""The ``cpu`` option: CPU seconds one program may use."""
MemoryMb = Annotated[int, OPERATOR, Field(ge=64, le=65536)]
"""The ``memory_mb`` option: the memory one program may hold."""


class LimitOptions(BaseModel):
    """The per-program limits (``timeout``, ``cpu``, ``memory_mb``) and the Limits they give."""

    timeout: WallSeconds = 5.0
    cpu: CpuSeconds = 5
    memory_mb: MemoryMb = 512

    @property
    def limits(self) -> Limits:
        """The per-program limits these options give."""
        return Limits(wall_seconds=self.timeout, cpu_seconds=self.cpu, memory_mb=self.memory_mb)


class SandboxOptions(LimitOptions):
    """The options of a batch runner: the limits, how many programs run at once and the box.

    Mixed in before a registry's settings base (``class S(SandboxOptions, StrategySettings)``)
    so the base's options come first and its config holds.
    """

    parallel: Annotated[int, OPERATOR] = Field(default=2, ge=1, le=256,
                                               description="programs run at once")
    sandbox: Annotated[Box, OPERATOR] = Field(
        default="auto", description="the box; the unisolated 'process' mode is the operator's "
                                    "choice only (TESTTIME_SANDBOX=process)")

    def check(self) -> None:
        """Raise (SandboxError) where no sandbox can run the programs."""
        resolve_mode(self.sandbox)
