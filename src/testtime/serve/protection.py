"""Bearer API keys with per-key caps and rate limits, and a concurrency limit with a queue."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import NoReturn, Protocol

from testtime.serve.config import KeyConfig
from testtime.serve.errors import ApiError

WINDOW = 60.0  # seconds of the per-minute limits


@dataclass(frozen=True)
class Caller:
    """Who sent a request: a log-safe label and the key's remaining tokens (None: unlimited)."""

    label: str
    key: str | None
    remaining: int | None


class KeyUsage:
    """One key's recent requests and tokens (last minute) and its requests in flight."""

    def __init__(self) -> None:
        self.spent = 0
        self.running = 0
        self.requests: deque[float] = deque()
        self.tokens: deque[tuple[float, int]] = deque()
        self.window_tokens = 0

    def expire(self, now: float) -> None:
        """Forget what happened more than a minute ago."""
        while self.requests and self.requests[0] <= now - WINDOW:
            self.requests.popleft()
        while self.tokens and self.tokens[0][0] <= now - WINDOW:
            self.window_tokens -= self.tokens.popleft()[1]


class KeyGuard:
    """Checks bearer keys and keeps each key's limits: lifetime tokens, rpm, tpm, concurrency.

    A refusal is a 429 with ``Retry-After`` (seconds until the limit frees up), reported to
    ``on_refuse(key label, reason)``.
    """

    def __init__(self, keys: dict[str, KeyConfig],
                 clock: Callable[[], float] = time.monotonic,
                 on_refuse: Callable[[str, str], None] | None = None) -> None:
        self.keys = dict(keys)
        self._usage: dict[str, KeyUsage] = {k: KeyUsage() for k in self.keys}
        self._lock = threading.Lock()
        self._clock = clock
        self._on_refuse = on_refuse

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
        """Tokens the key may still spend now: the tighter of its cap and its tpm, or None."""
        cfg = self.keys[key]
        usage = self._usage[key]
        left: list[int] = []
        with self._lock:
            if cfg.budget_tokens is not None:
                left.append(max(cfg.budget_tokens - usage.spent, 0))
            if cfg.tpm is not None:
                usage.expire(self._clock())
                left.append(max(cfg.tpm - usage.window_tokens, 0))
        return min(left) if left else None

    def admit(self, caller: Caller) -> Lease:
        """Let the caller's request in, or refuse it (429); the Lease ends it for concurrency."""
        if caller.key is None:
            return Lease()
        cfg = self.keys[caller.key]
        usage = self._usage[caller.key]
        with self._lock:
            now = self._clock()
            usage.expire(now)
            if cfg.budget_tokens is not None and usage.spent >= cfg.budget_tokens:
                self._refuse(caller, "quota", f"token budget of {caller.label} is spent",
                             "insufficient_quota", None)
            if cfg.concurrency is not None and usage.running >= cfg.concurrency:
                self._refuse(caller, "concurrency", f"{caller.label} already has "
                             f"{usage.running} requests running (limit {cfg.concurrency})",
                             "rate_limit_exceeded", 1.0)
            if cfg.rpm is not None and len(usage.requests) >= cfg.rpm:
                wait = usage.requests[0] + WINDOW - now
                self._refuse(caller, "rpm", f"{caller.label} reached its limit of {cfg.rpm} "
                             "requests per minute", "rate_limit_exceeded", wait)
            if cfg.tpm is not None and usage.window_tokens >= cfg.tpm:
                self._refuse_tpm(caller, cfg.tpm, usage.window_tokens - cfg.tpm, now)
            usage.requests.append(now)
            usage.running += 1
        return Lease(lambda: self._finish(usage))

    def refuse_short(self, caller: Caller, need: int) -> NoReturn:
        """Refuse a request whose prompt alone needs more than the key may spend now (429).

        When the key's tokens-per-minute bind and waiting frees enough, it is a rate limit
        with ``Retry-After``; otherwise the key's token budget is too short for it.
        """
        assert caller.key is not None
        cfg = self.keys[caller.key]
        usage = self._usage[caller.key]
        with self._lock:
            now = self._clock()
            usage.expire(now)
            budget_left = (None if cfg.budget_tokens is None
                           else cfg.budget_tokens - usage.spent)
            if (cfg.tpm is not None and cfg.tpm > need
                    and (budget_left is None or budget_left > need)):
                self._refuse_tpm(caller, cfg.tpm, usage.window_tokens + need - cfg.tpm, now)
        self._refuse(caller, "quota", f"token budget of {caller.label} has "
                     f"{caller.remaining} tokens left, too few for this request's prompt(s)",
                     "insufficient_quota", None)

    def _refuse_tpm(self, caller: Caller, tpm: int, excess: int, now: float) -> NoReturn:
        """A tokens-per-minute refusal, retried once ``excess`` tokens have left the window."""
        usage = self._usage[caller.key or ""]
        wait = 0.0
        for at, tokens in usage.tokens:
            wait, excess = at + WINDOW - now, excess - tokens
            if excess < 0:
                break
        self._refuse(caller, "tpm", f"{caller.label} reached its limit of {tpm} tokens per "
                     "minute", "rate_limit_exceeded", wait)

    def _finish(self, usage: KeyUsage) -> None:
        with self._lock:
            usage.running -= 1

    def _refuse(self, caller: Caller, reason: str, message: str, code: str,
                wait: float | None) -> NoReturn:
        if self._on_refuse is not None:
            self._on_refuse(caller.label, reason)
        headers = {} if wait is None else {"Retry-After": str(max(math.ceil(wait), 1))}
        raise ApiError(429, message, code, headers=headers)

    def charge(self, caller: Caller, tokens: int) -> None:
        """Add what a request cost to its key's spend (lifetime and last minute)."""
        if caller.key is None:
            return
        usage = self._usage[caller.key]
        with self._lock:
            usage.spent += tokens
            if tokens:
                usage.tokens.append((self._clock(), tokens))
                usage.window_tokens += tokens

    def spent(self) -> dict[str, int]:
        """Tokens spent per key label."""
        with self._lock:
            return {self.label(k): u.spent for k, u in self._usage.items()}


class Limiter:
    """At most ``limit`` requests run at once; up to ``queue`` wait, each for ``wait`` seconds.

    Beyond that a request is refused at once with 429 and ``Retry-After``, so overload turns
    into back-pressure on clients instead of unbounded queues and timeouts for everyone.
    Admission counts the requests it has let in (running or waiting) itself, so a burst is
    refused only when ``limit + queue`` of them are really in: a slot that was just released
    but whose next waiter has not resumed yet still counts as free capacity taken, not as
    "busy".
    """

    def __init__(self, limit: int, queue: int, wait: float) -> None:
        self.limit = limit
        self.queue = queue
        self.wait = wait
        self.admitted = 0
        self.running = 0
        self.refused = 0
        self._sem = asyncio.Semaphore(limit)

    @property
    def waiting(self) -> int:
        """Requests let in that do not hold a slot yet."""
        return self.admitted - self.running

    async def acquire(self) -> Lease:
        """Wait for a slot (bounded); the returned Lease frees it, once, when released."""
        if self.admitted >= self.limit + self.queue:
            self.refused += 1
            raise ApiError(429, f"server busy: {self.running} running, {self.waiting} queued",
                           "server_busy", headers={"Retry-After": "1"})
        self.admitted += 1
        try:
            await asyncio.wait_for(self._sem.acquire(), timeout=self.wait)
        except TimeoutError:
            self.admitted -= 1
            self.refused += 1
            raise ApiError(429, f"server busy: no slot free within {self.wait:g}s",
                           "server_busy", headers={"Retry-After": "1"}) from None
        except BaseException:
            self.admitted -= 1
            raise
        self.running += 1
        return Lease(self._release)

    def _release(self) -> None:
        self.running -= 1
        self.admitted -= 1
        self._sem.release()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one slot for the duration of the block."""
        lease = await self.acquire()
        try:
            yield
        finally:
            lease.release()


class GuardFactory(Protocol):
    """Builds the KeyGuard of a gateway (``KeyGuard`` itself, or a shared one)."""

    def __call__(self, keys: dict[str, KeyConfig], *,
                 on_refuse: Callable[[str, str], None] | None = None) -> KeyGuard:
        """A guard over ``keys`` reporting refusals to ``on_refuse``."""
        ...


class Lease:
    """Something held for a request (a slot, a key's concurrency); ``release`` is idempotent."""

    def __init__(self, *releases: Callable[[], None]) -> None:
        self._releases: list[Callable[[], None]] | None = list(releases)

    def release(self) -> None:
        """Give everything back (later calls do nothing)."""
        if self._releases is not None:
            releases, self._releases = self._releases, None
            for release in releases:
                release()
