"""The one async protocol every engine sits behind, and the backend registry."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, ValidationError

from testtime.budget import CostModel, stopped_sink
from testtime.registry import Registry, SpecError, describe, split_spec
from testtime.types import Completion, Generation, GenerationRequest, Piece


async def stream_pieces(call: Callable[[Callable[[Piece], None]], Awaitable[Generation]],
                        grace: float) -> AsyncIterator[Piece | Generation]:
    """Run ``call(emit)`` as a task and yield every piece it emits (from any thread), then
    its Generation. Closing the stream early cancels the call and waits up to ``grace``
    seconds for it to report its stopped work; a call that finished just as the stream was
    closed reports its Generation as stopped work all the same."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Piece | Generation | BaseException] = asyncio.Queue()

    def emit(piece: Piece) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, piece)

    sink = stopped_sink()
    task = asyncio.ensure_future(call(emit))
    task.add_done_callback(
        lambda t: queue.put_nowait(t.exception() or t.result()) if not t.cancelled() else None)
    delivered = False
    try:
        while True:
            item = await queue.get()
            if isinstance(item, BaseException):
                raise item
            delivered = isinstance(item, Generation)
            yield item
            if delivered:
                return
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({task}, timeout=grace)  # its stopped work is counted
        elif not delivered and sink is not None and not task.cancelled() \
                and task.exception() is None:
            sink(task.result())


class BackendError(RuntimeError):
    """An engine or server failed to answer (unreachable, error reply, bad output)."""


class UnsupportedRequest(BackendError):
    """The backend cannot honour what the request asks (a tool list in completions mode, a
    JSON schema its grammar support rejects): the caller's mistake, not an outage."""


class Capabilities(BaseModel):
    """What a backend can do natively; strategies and the Context adapt to it."""

    model_config = ConfigDict(frozen=True)

    max_n: int = 1
    logprobs: bool = False
    prefix_cache: bool = False
    max_parallel: int = 1
    streaming: bool = False


@runtime_checkable
class Backend(Protocol):
    """An engine that samples completions for a prompt."""

    name: str
    capabilities: Capabilities
    cost: CostModel

    async def generate(self, req: GenerationRequest) -> Generation:
        """Sample ``req.n`` completions of ``req.prompt``."""
        ...

    async def ready(self) -> None:
        """Load the model or reach the server now; raise BackendError if it cannot be."""
        ...

    async def close(self) -> None:
        """Release the engine or connections."""
        ...


class StreamingBackend(Backend, Protocol):
    """A backend that can also stream a single completion as it is produced."""

    def stream(self, req: GenerationRequest) -> AsyncIterator[Piece | Generation]:
        """Yield pieces (text, token logprobs when asked for), then the finished Generation
        as the last item; closing the stream early stops the engine and reports the work
        done as stopped (see :func:`testtime.budget.stopped_sink`)."""
        ...


class BackendSettings(BaseModel):
    """Base for each backend's validated options."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    positional: ClassVar[str] = "target"


backends: Registry[Any] = Registry("backend")


def backend_settings(spec: str) -> tuple[Any, BackendSettings]:
    """The backend class a spec names and its validated settings; SpecError if invalid."""
    cls = backends.get(spec.partition(":")[0].strip())
    settings_cls: type[BackendSettings] = cls.Settings
    _, options = split_spec(spec, positional=settings_cls.positional)
    try:
        return cls, settings_cls.model_validate(options)
    except ValidationError as exc:
        raise SpecError(
            f"invalid backend spec {spec!r}: {describe(exc, settings_cls)}") from None


def make_backend(spec: str) -> Backend:
    """Build a backend from a spec such as ``embedded:qwen2.5-coder-0.5b,slots=16``.

    The first option without ``=`` is the backend's main target (model or URL).
    """
    cls, settings = backend_settings(spec)
    backend: Backend = cls(settings)
    return backend


def part_request(req: GenerationRequest, offset: int, n: int) -> GenerationRequest:
    """Samples ``offset .. offset + n - 1`` of ``req`` as a request of their own.

    Engines seed the i-th sample of a call with ``seed + i``, so shifting the seed by the offset
    gives every part the samples the whole request would have had, and no two parts the same.
    """
    seed = None if req.seed is None else req.seed + offset
    return req.model_copy(update={"n": n, "seed": seed})


def join_completions(parts: list[Generation], counted_by: str) -> Generation:
    """Merge the generations of several calls that served one request."""
    completions: list[Completion] = [c for g in parts for c in g.completions]
    return Generation(
        completions=tuple(completions),
        prompt_tokens=sum(g.prompt_tokens for g in parts),
        cached_tokens=sum(g.cached_tokens for g in parts),
        seconds=max((g.seconds for g in parts), default=0.0),
        counted_by=counted_by,
    )
