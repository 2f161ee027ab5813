"""How much of this process's cores other processes use, and a governor that sizes an
engine's threads to what they leave free.

llama.cpp's threads meet at a barrier after every operation, so when another process takes a
core, the engine thread that shares it holds all the others up: on 2 cores a busy loop on one
of them cost a 2-thread engine two thirds of its speed, while a 1-thread engine lost almost
nothing. The governor reads the machine's CPU counters once a second and, once three readings
in a row agree that a different thread count fits, has the engine rebuilt with it.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from testtime.backends.threads import cores

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(cpus: set[int]) -> tuple[float, float] | None:
    """Busy seconds of ``cpus`` (everything but idle and I/O wait; time stolen by a
    hypervisor counts as busy) and this process's own CPU seconds; None without /proc."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    busy = 0
    for line in lines:
        name, _, rest = line.partition(" ")
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            ticks = [int(x) for x in rest.split()[:8]]
            busy += sum(ticks) - ticks[3] - (ticks[4] if len(ticks) > 4 else 0)
    own = os.times()
    return busy / CLOCK_TICKS, own.user + own.system


class OtherLoad:
    """Cores of this process's affinity mask kept busy by other processes, per reading."""

    def __init__(self, counts: Callable[[set[int]], tuple[float, float] | None] = cpu_seconds,
                 clock: Callable[[], float] = time.monotonic) -> None:
        try:
            self.cpus = set(os.sched_getaffinity(0))
        except AttributeError:
            self.cpus = set(range(cores()))
        self._counts, self._clock = counts, clock
        self._last = (clock(), counts(self.cpus))

    def read(self) -> float | None:
        """The average number of cores other processes used since the last reading."""
        now, counts = self._clock(), self._counts(self.cpus)
        then, before = self._last
        self._last = (now, counts)
        if counts is None or before is None or now - then < 0.05:
            return None
        used = (counts[0] - before[0]) - (counts[1] - before[1])
        return max(0.0, used / (now - then))


def threads_left(share: int, other: float, total: int) -> int:
    """An engine's threads when other processes keep ``other`` of ``total`` cores busy: its
    ``share`` scaled to the cores they leave free, at least one."""
    free = max(0.0, total - other)
    return max(1, min(share, round(share * free / total)))


class Governed(Protocol):
    """An engine the governor can re-size."""

    threads: int | None

    def thread_share(self) -> int:
        """The threads this engine may use on an idle machine."""
        ...

    def rethread(self, threads: int) -> None:
        """Rebuild the engine with ``threads`` threads."""
        ...


class ThreadGovernor:
    """A daemon thread that re-sizes one engine's threads to the cores left free.

    Every ``every`` seconds it reads the other processes' load; when ``agree`` readings in a
    row ask for the same thread count, different from the engine's, and ``cooldown`` seconds
    have passed since the last change, it calls ``rethread``. It holds the engine weakly and
    ends with it, or when stopped.
    """

    def __init__(self, engine: Governed, *, every: float = 1.0, agree: int = 3,
                 cooldown: float = 10.0, load: OtherLoad | None = None) -> None:
        self._engine: Callable[[], Governed | None] = weakref.ref(engine)
        self._every, self._cooldown = every, cooldown
        self._load = load or OtherLoad()
        self._wanted: deque[int] = deque(maxlen=agree)
        self._changed = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="testtime-governor",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End the governor's thread."""
        self._stop.set()

    def step(self) -> int | None:
        """Take one reading; returns the thread count it changed the engine to, if it did."""
        engine = self._engine()
        other = self._load.read()
        if engine is None or other is None:
            return None
        self._wanted.append(threads_left(engine.thread_share(), other, len(self._load.cpus)))
        wanted = self._wanted[0]
        settled = len(self._wanted) == self._wanted.maxlen and set(self._wanted) == {wanted}
        if not settled or wanted == engine.threads \
                or time.monotonic() - self._changed < self._cooldown:
            return None
        engine.rethread(wanted)
        self._changed = time.monotonic()
        self._wanted.clear()
        return wanted

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            if self._engine() is None:
                return
            self.step()


def initial_threads(share: int, sample: float = 0.5) -> int:
    """The thread count to start an engine with, from the load over ``sample`` seconds."""
    load = OtherLoad()
    time.sleep(sample)
    other = load.read()
    return share if other is None else threads_left(share, other, len(load.cpus))
