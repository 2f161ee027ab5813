"""Bearer API keys with per-key token caps, and a concurrency limit with a bounded queue."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from testtime.serve.config import KeyConfig
from testtime.serve.errors import ApiError


@dataclass(frozen=True)
class Caller:
    """Who sent a request: a log-safe label and the key's remaining tokens (None: unlimited)."""

    label: str
    key: str | None
    remaining: int | None


class KeyGuard:
    """Checks bearer keys and keeps each key's lifetime token spend against its cap."""

    def __init__(self, keys: dict[str, KeyConfig]) -> None:
        self.keys = dict(keys)
        self._spent: dict[str, int] = dict.fromkeys(self.keys, 0)
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """Whether requests must carry a key."""
        return bool(self.keys)

    def authenticate(self, authorization: str | None) -> Caller:
        """The Caller for an ``Authorization`` header; 401 when a key is needed and wrong."""
        if not self.enabled:
            return Caller(label="anonymous", key=None, remaining=None)
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, "missing API key: send 'Authorization: Bearer KEY'",
                           "invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
        match = next((k for k in self.keys
                      if hmac.compare_digest(k.encode(), token.encode())), None)
        if match is None:
            raise ApiError(401, "invalid API key", "invalid_api_key",
                           headers={"WWW-Authenticate": "Bearer"})
        return Caller(label=self.label(match), key=match, remaining=self.remaining(match))

    def label(self, key: str) -> str:
        """The key's configured name, or a short hash (keys never reach the logs)."""
        name = self.keys[key].name
        return name or "key-" + hashlib.sha256(key.encode()).hexdigest()[:8]

    def remaining(self, key: str) -> int | None:
        """Tokens the key may still spend, or None when it has no cap."""
        cap = self.keys[key].budget_tokens
        with self._lock:
            return None if cap is None else max(cap - self._spent[key], 0)

    def admit(self, caller: Caller) -> None:
        """Refuse (429) a caller whose cap is spent."""
        if caller.remaining is not None and caller.remaining <= 0:
            raise ApiError(429, f"token budget of {caller.label} is spent", "insufficient_quota")

    def charge(self, caller: Caller, tokens: int) -> None:
        """Add what a request cost to its key's spend."""
        if caller.key is None:
            return
        with self._lock:
            self._spent[caller.key] += tokens

    def spent(self) -> dict[str, int]:
        """Tokens spent per key label."""
        with self._lock:
            return {self.label(k): v for k, v in self._spent.items()}


class Limiter:
    """At most ``limit`` requests run at once; up to ``queue`` wait, each for ``wait`` seconds.

    Beyond that a request is refused at once with 429 and ``Retry-After``, so overload turns
    into back-pressure on clients instead of unbounded queues and timeouts for everyone.
    """

    def __init__(self, limit: int, queue: int, wait: float) -> None:
        self.limit = limit
        self.queue = queue
        self.wait = wait
        self.running = 0
        self.waiting = 0
        self.refused = 0
        self._sem = asyncio.Semaphore(limit)

    async def acquire(self) -> Lease:
        """Wait for a slot (bounded); the returned Lease frees it, once, when released."""
        if self._sem.locked() and self.waiting >= self.queue:
            self.refused += 1
            raise ApiError(429, f"server busy: {self.running} running, {self.waiting} queued",
                           "server_busy", headers={"Retry-After": "1"})
        self.waiting += 1
        try:
            await asyncio.wait_for(self._sem.acquire(), timeout=self.wait)
        except TimeoutError:
            self.refused += 1
            raise ApiError(429, f"server busy: no slot free within {self.wait:g}s",
                           "server_busy", headers={"Retry-After": "1"}) from None
        finally:
            self.waiting -= 1
        self.running += 1
        return Lease(self)

    def _release(self) -> None:
        self.running -= 1
        self._sem.release()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one slot for the duration of the block."""
        lease = await self.acquire()
        try:
            yield
        finally:
            lease.release()


class Lease:
    """One held Limiter slot; ``release`` is idempotent."""

    def __init__(self, limiter: Limiter) -> None:
        self._limiter: Limiter | None = limiter

    def release(self) -> None:
        """Give the slot back (later calls do nothing)."""
        if self._limiter is not None:
            limiter, self._limiter = self._limiter, None
            limiter._release()
