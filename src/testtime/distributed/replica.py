"""One backend replica: the object a Ray actor holds, serving sweep units concurrently.

The class is plain Python so it can be tested without Ray; ``ray_sweep`` wraps it with
``ray.remote`` and the resources the sweep asks for. One engine is built per replica from the
sweep's backend spec and reused for every unit the replica is given.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from testtime.backends.base import Backend, make_backend
from testtime.eval.sweep import run_unit
from testtime.eval.units import Unit


@dataclass(frozen=True)
class Outcome:
    """What a replica sends back for one unit: the record, or the error that stopped it."""

    key: str
    record: dict[str, Any] | None
    error: str | None
    seconds: float
    pid: int


def record_error(record: dict[str, Any]) -> str | None:
    """The error a record carries, if the unit runner caught one and recorded it."""
    error = record.get("error")
    return str(error) if error else None


class BackendReplica:
    """A backend built from a spec, kept for the replica's lifetime."""

    def __init__(self, backend_spec: str) -> None:
        self.spec = backend_spec
        self.backend: Backend = make_backend(backend_spec)
        self.served = 0

    async def ready(self) -> int:
        """Load the model or reach the server; returns this process's PID."""
        await self.backend.ready()
        return os.getpid()

    async def run(self, unit: Unit) -> Outcome:
        """Run one unit on this replica's backend; exceptions come back as an error string."""
        started = time.monotonic()
        try:
            record = await run_unit(unit, self.backend)
        except Exception as exc:  # a failing unit is reported, not fatal to the replica
            return Outcome(unit.key, None, f"{type(exc).__name__}: {exc}",
                           time.monotonic() - started, os.getpid())
        self.served += 1
        return Outcome(unit.key, record, record_error(record), time.monotonic() - started,
                       os.getpid())

    def pid(self) -> int:
        """The PID of the process holding this replica (for fault injection and diagnosis)."""
        return os.getpid()

    def where(self) -> dict[str, Any]:
        """Where this replica runs: PID, Ray node id and node IP address."""
        import ray

        return {"pid": os.getpid(), "node_id": ray.get_runtime_context().get_node_id(),
                "ip": ray.util.get_node_ip_address()}

    async def close(self) -> None:
        """Release the engine."""
        await self.backend.close()
