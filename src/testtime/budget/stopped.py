"""Where a backend reports the work of a call stopped before it finished (a context variable).

The metered call sets the sink for the duration of a call; a backend reads it when the call
starts and, if the call is cancelled, sends it what the engine produced up to the stop, so that
work reaches the Ledger too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from testtime.types import Generation

_STOPPED: ContextVar[Callable[[Generation], None] | None] = ContextVar("testtime_stopped",
                                                                        default=None)


def stopped_sink() -> Callable[[Generation], None] | None:
    """Where a backend reports the work of a call that was stopped before it finished.

    Backends read it when a call starts (in the caller's context) and, if the call is
    cancelled, send it what the engine produced up to the stop (from any thread).
    """
    return _STOPPED.get()


@contextmanager
def on_stopped(sink: Callable[[Generation], None]) -> Iterator[None]:
    """Send the stopped work of backend calls started inside the block to ``sink``."""
    token = _STOPPED.set(sink)
    try:
        yield
    finally:
        _STOPPED.reset(token)
