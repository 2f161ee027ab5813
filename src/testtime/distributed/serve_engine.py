"""Engine replicas of the gateway on Ray Serve, and the Backend gateway replicas call them by.

``EngineReplica`` (one Serve replica) builds one backend from the config's spec: ``embedded:``
loads llama.cpp in the replica, ``openai:`` opens a client. ``RemoteBackend`` implements the
Backend protocol over a Serve handle to those replicas, so strategies, the Ledger and Usage
are the same as with a backend in the gateway's own process: every Generation comes back
whole, with its token counts.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

from testtime.backends.base import (
    Backend,
    BackendError,
    Capabilities,
    backend_settings,
    join_completions,
    make_backend,
    part_request,
)
from testtime.budget import CostModel
from testtime.types import Generation, GenerationRequest


class EngineReplica:
    """One backend built from a spec, serving generation calls for every gateway replica."""

    def __init__(self, backend_spec: str) -> None:
        self.backend: Backend = make_backend(backend_spec)
        self._ready = False

    async def _ensure_ready(self) -> None:
        if not self._ready:
            await self.backend.ready()
            self._ready = True

    async def info(self) -> dict[str, Any]:
        """Load the engine; its capabilities, cost model and this process's PID."""
        await self._ensure_ready()
        return {"capabilities": self.backend.capabilities, "cost": self.backend.cost,
                "pid": os.getpid()}

    async def generate(self, req: GenerationRequest) -> Generation:
        """Sample ``req`` on this replica's engine."""
        await self._ensure_ready()
        return await self.backend.generate(req)

    def pid(self) -> int:
        """The PID of this replica's process (for fault injection and diagnosis)."""
        return os.getpid()


def lost_replica_errors() -> tuple[type[BaseException], ...]:
    """The exceptions a call raises when the replica serving it dies."""
    from ray.exceptions import ActorUnavailableError, RayActorError

    return (RayActorError, ActorUnavailableError)


class RemoteBackend:
    """The Backend of a gateway replica: calls engine replicas through a Serve handle.

    A call of ``n`` samples is split into up to ``spread`` parts (seeds shifted as
    ``part_request`` does), which Serve routes to different engine replicas. A call whose
    replica dies before answering is sent again, up to ``retries`` times, to whichever replica
    Serve routes it to; nothing of it has reached the client, since calls answer whole.
    ``on_lost`` is told of every call lost that way.
    """

    def __init__(self, handle: Any, backend_spec: str, spread: int = 1,
                 retries: int = 2, on_lost: Callable[[], None] | None = None) -> None:
        _, self.settings = backend_settings(backend_spec)
        self.name = backend_spec.partition(":")[0].strip()
        self.handle = handle
        self.spread = max(spread, 1)
        self.retries = retries
        self.capabilities = Capabilities()
        self.cost = CostModel()
        self.lost = 0
        self.on_lost = on_lost

    async def ready(self) -> None:
        """Reach an engine replica and take its capabilities and cost model."""
        info = await self._call("info")
        caps: Capabilities = info["capabilities"]
        self.capabilities = caps.model_copy(update={
            "max_parallel": caps.max_parallel * self.spread, "streaming": False})
        self.cost = info["cost"]

    async def generate(self, req: GenerationRequest) -> Generation:
        """Sample ``req`` on the engine replicas, split over up to ``spread`` of them."""
        parts = min(req.n, self.spread)
        if parts <= 1:
            out: Generation = await self._call("generate", req)
            return out
        sizes = [req.n // parts + (i < req.n % parts) for i in range(parts)]
        offsets = [sum(sizes[:i]) for i in range(parts)]
        gens = await asyncio.gather(*(self._call("generate", part_request(req, o, k))
                                      for o, k in zip(offsets, sizes, strict=True)))
        return join_completions(list(gens), gens[0].counted_by)

    async def _call(self, method: str, *args: Any) -> Any:
        lost = lost_replica_errors()
        for attempt in range(self.retries + 1):
            try:
                return await getattr(self.handle, method).remote(*args)
            except lost as exc:
                self.lost += 1
                if self.on_lost is not None:
                    self.on_lost()
                if attempt == self.retries:
                    raise BackendError(f"engine replica lost ({type(exc).__name__}), "
                                       f"{self.retries} retries spent") from None
        raise AssertionError("unreachable")

    async def close(self) -> None:
        """Nothing to release here: engine replicas belong to Serve."""
