"""One process-wide budget of CPU threads for the embedded engines a process holds.

llama.cpp splits every step across its threads and waits at a barrier for the slowest, so two
engines whose threads together outnumber the cores (a judge model beside the policy model)
slow each other far more than their share. Each engine registers when it is built; one whose
``threads`` is not set gets an equal share of what explicit settings leave, when it starts.
"""

from __future__ import annotations

import os
import threading
import weakref

ENV = "TESTTIME_ENGINE_THREADS"


def cores() -> int:
    """CPUs this process may run on (its affinity mask, so ``taskset`` and cpusets count)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class ThreadBudget:
    """Splits ``total`` threads among registered engines; engines leave when closed or freed."""

    def __init__(self, total: int | None = None) -> None:
        self._total = total
        self._lock = threading.Lock()
        self._engines: weakref.WeakKeyDictionary[object, int | None] = weakref.WeakKeyDictionary()

    @property
    def total(self) -> int:
        """The budget: the constructor's, else ``$TESTTIME_ENGINE_THREADS``, else the cores."""
        if self._total is not None:
            return self._total
        env = os.environ.get(ENV, "").strip()
        return int(env) if env.isdigit() and int(env) > 0 else cores()

    def join(self, engine: object, threads: int | None) -> None:
        """Count ``engine`` in, with its explicit thread count or None for a share."""
        with self._lock:
            self._engines[engine] = threads

    def leave(self, engine: object) -> None:
        """Stop counting ``engine``."""
        with self._lock:
            self._engines.pop(engine, None)

    def threads_for(self, engine: object) -> int:
        """``engine``'s threads: its explicit count, else an equal share of what is left."""
        with self._lock:
            mine = self._engines.get(engine)
            if mine is not None:
                return mine
            explicit = sum(t for t in self._engines.values() if t is not None)
            shared = sum(1 for t in self._engines.values() if t is None) or 1
            return max(1, (self.total - explicit) // shared)

    def engines(self) -> int:
        """How many engines are counted now."""
        with self._lock:
            return len(self._engines)


ENGINE_THREADS = ThreadBudget()
