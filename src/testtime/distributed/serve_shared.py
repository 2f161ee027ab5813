"""What every gateway replica on Ray shares: per-key counts and metrics, each in one actor.

``KeyCounts`` holds the one authoritative ``KeyGuard`` of the application; ``SharedKeyGuard``
is the KeyGuard each gateway replica uses, asking that actor whenever a count is read or
changed, so N replicas give a key exactly its allowance. ``MetricsHub`` holds the one
``Metrics``; ``SharedMetrics`` sends it every count and renders what it holds, so ``/metrics``
on any replica shows the whole application.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any, NoReturn

from testtime.serve.config import KeyConfig
from testtime.serve.errors import ApiError
from testtime.serve.metrics import Metrics
from testtime.serve.protection import Caller, KeyGuard, Lease

Refusal = tuple[str, int, str, str | None, dict[str, str]]
"""A refused admission: reason, HTTP status, message, error code, headers."""


class KeyCounts:
    """The application's per-key counts (a Ray actor); refusals come back as values.

    A lease not released within ``lease_ttl`` seconds (its gateway replica died) is released
    by the next admission, so a lost replica does not hold a key's concurrency forever.
    """

    def __init__(self, keys: dict[str, KeyConfig], lease_ttl: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._reason = ""
        self.guard = KeyGuard(keys, clock=clock, on_refuse=self._note)
        self.lease_ttl = lease_ttl
        self._clock = clock
        self._leases: dict[int, tuple[Lease, float]] = {}
        self._ids = itertools.count(1)

    def _note(self, label: str, reason: str) -> None:
        self._reason = reason

    def _caller(self, key: str) -> Caller:
        return Caller(label=self.guard.label(key), key=key, remaining=None)

    def _refusal(self, exc: ApiError) -> Refusal:
        return (self._reason, exc.status, exc.message, exc.code, exc.headers)

    def admit(self, key: str) -> int | Refusal:
        """A lease id for a request of ``key``, or why it is refused."""
        now = self._clock()
        for lid, (lease, until) in list(self._leases.items()):
            if until <= now:
                lease.release()
                del self._leases[lid]
        try:
            lease = self.guard.admit(self._caller(key))
        except ApiError as exc:
            return self._refusal(exc)
        lid = next(self._ids)
        self._leases[lid] = (lease, now + self.lease_ttl)
        return lid

    def release(self, lease_id: int) -> None:
        """End a request's lease (its concurrency slot)."""
        held = self._leases.pop(lease_id, None)
        if held is not None:
            held[0].release()

    def refuse_short(self, key: str, need: int, remaining: int | None) -> Refusal:
        """Why a request needing ``need`` prompt tokens is refused (rate or budget)."""
        caller = Caller(label=self.guard.label(key), key=key, remaining=remaining)
        try:
            self.guard.refuse_short(caller, need)
        except ApiError as exc:
            return self._refusal(exc)
        raise AssertionError("refuse_short always refuses")

    def remaining(self, key: str) -> int | None:
        """Tokens ``key`` may still spend now."""
        return self.guard.remaining(key)

    def charge(self, key: str, tokens: int) -> None:
        """Add what a request cost to ``key``."""
        self.guard.charge(self._caller(key), tokens)

    def spent(self) -> dict[str, int]:
        """Tokens spent per key label."""
        return self.guard.spent()

    def running(self) -> int:
        """Requests holding a lease now (all keys)."""
        return len(self._leases)


class SharedKeyGuard(KeyGuard):
    """A KeyGuard whose counts live in a ``KeyCounts`` actor shared by every replica."""

    def __init__(self, keys: dict[str, KeyConfig], *,
                 on_refuse: Callable[[str, str], None] | None = None,
                 counts: Any) -> None:
        super().__init__(keys, on_refuse=on_refuse)
        self.counts = counts

    def remaining(self, key: str) -> int | None:
        """Tokens the key may still spend now, from the shared counts."""
        cfg = self.keys[key]
        if cfg.budget_tokens is None and cfg.tpm is None:
            return None
        left: int | None = _get(self.counts.remaining.remote(key))
        return left

    def admit(self, caller: Caller) -> Lease:
        """Admit or refuse (429) against the shared counts."""
        if caller.key is None:
            return Lease()
        outcome = _get(self.counts.admit.remote(caller.key))
        if isinstance(outcome, int):
            return Lease(lambda: self.counts.release.remote(outcome))
        self._raise(caller, outcome)

    def refuse_short(self, caller: Caller, need: int) -> NoReturn:
        """Refuse a request whose prompt needs more than the key may spend (429)."""
        assert caller.key is not None
        self._raise(caller, _get(self.counts.refuse_short.remote(
            caller.key, need, caller.remaining)))

    def _raise(self, caller: Caller, refusal: Refusal) -> NoReturn:
        reason, status, message, code, headers = refusal
        if self._on_refuse is not None:
            self._on_refuse(caller.label, reason)
        raise ApiError(status, message, code, headers=headers)

    def charge(self, caller: Caller, tokens: int) -> None:
        """Add what a request cost to its key, in the shared counts."""
        if caller.key is not None:
            self.counts.charge.remote(caller.key, tokens)

    def spent(self) -> dict[str, int]:
        """Tokens spent per key label, over the whole application."""
        out: dict[str, int] = _get(self.counts.spent.remote())
        return out


class MetricsHub:
    """The application's metrics (a Ray actor): counters and histograms from every replica,
    gauges summed over the latest value each replica reported."""

    def __init__(self) -> None:
        self.metrics = Metrics()
        self._gauges: dict[str, dict[str, float]] = {}
        self.served: dict[str, int] = {}

    def inc(self, name: str, help_text: str, value: float, labels: dict[str, str]) -> None:
        """Add to a counter."""
        self.metrics.inc(name, help_text, value, **labels)

    def observe(self, replica: str, endpoint: str, status: int, seconds: float,
                gauges: dict[str, tuple[str, float]]) -> None:
        """Count one finished request of ``replica`` and take its gauges."""
        self.served[replica] = self.served.get(replica, 0) + 1
        self.metrics.observe_request(endpoint, status, seconds)
        self.report(replica, gauges)

    def report(self, replica: str, gauges: dict[str, tuple[str, float]]) -> None:
        """Take ``replica``'s current gauge values."""
        for name, (help_text, value) in gauges.items():
            if name not in self._gauges:
                self._gauges[name] = {}
                self.metrics.gauge(name, help_text, self._summed(name))
            self._gauges[name][replica] = value

    def _summed(self, name: str) -> Callable[[], float]:
        return lambda: sum(self._gauges[name].values())

    def render(self) -> str:
        """The exposition text of the whole application."""
        return self.metrics.render()

    def requests_by_replica(self) -> dict[str, int]:
        """Finished requests per gateway replica."""
        return dict(self.served)


class SharedMetrics(Metrics):
    """A replica's Metrics: counts go to the ``MetricsHub``; gauges are read here and sent
    with each finished request and each scrape."""

    def __init__(self, hub: Any, replica: str) -> None:
        super().__init__()
        self.hub = hub
        self.replica = replica

    def inc(self, name: str, help_text: str, value: float = 1.0, **labels: str) -> None:
        """Add to the shared counter."""
        self.hub.inc.remote(name, help_text, value, labels)

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        """Count a finished request in the shared metrics."""
        self.hub.observe.remote(self.replica, endpoint, status, seconds, self._read())

    def _read(self) -> dict[str, tuple[str, float]]:
        return {name: (help_text, float(read()))
                for name, (help_text, read) in self._gauges.items()}

    def render(self) -> str:
        """The exposition text of every replica together."""
        self.hub.report.remote(self.replica, self._read())
        text: str = _get(self.hub.render.remote())
        return text


def _get(ref: Any) -> Any:
    import ray

    return ray.get(ref)
