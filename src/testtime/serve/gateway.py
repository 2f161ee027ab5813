"""The gateway's engine room: run a strategy for a request under budget, deadline and limits.

Each choice of each prompt gets its own Context (ledger, seed), so usage is exact per request
and also charged to the caller's key when the request fails halfway. Upstream failures become
502, deadlines 504, and neither affects other requests.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from testtime.backends.base import Backend, BackendError
from testtime.budget import Budget, BudgetExhausted
from testtime.registry import SpecError
from testtime.serve.config import ServeConfig
from testtime.serve.errors import ApiError
from testtime.serve.metrics import Metrics
from testtime.serve.protection import Caller, KeyGuard, Limiter
from testtime.serve.routing import Router
from testtime.strategies.base import Context
from testtime.strategies.single import Single
from testtime.types import Generation, GenerationRequest, Problem, Result, Sampling, Usage

log = logging.getLogger("testtime.serve")
CANCEL_GRACE = 5.0  # seconds a timed-out or abandoned request waits for its work to stop


def tighter(a: Budget, b: Budget) -> Budget:
    """The budget allowing only what both allow."""
    values: dict[str, Any] = {}
    for name in Budget.model_fields:
        given = [v for v in (getattr(a, name), getattr(b, name)) if v is not None]
        if given:
            values[name] = min(given)
    return Budget(**values)


@dataclass
class Job:
    """One request's work: problems × n choices of one strategy, under one budget per choice."""

    problems: list[Problem]
    n: int
    strategy: Any
    spec: str
    budget: Budget
    seed: int | None
    caller: Caller
    contexts: list[Context] = field(default_factory=list)

    def usage(self) -> Usage:
        """What the job has spent so far, over every choice."""
        return Usage.total([c.ledger.usage for c in self.contexts])


class Gateway:
    """Holds the backend, router, key guard, limiter and metrics of one running server."""

    def __init__(self, config: ServeConfig, backend: Backend, router: Router) -> None:
        self.config = config
        self.backend = backend
        self.router = router
        self.guard = KeyGuard(config.api_keys)
        self.limiter = Limiter(config.max_concurrency, config.max_queue, config.queue_timeout)
        self.metrics = Metrics()
        self.started = time.time()
        self.metrics.gauge("testtime_gateway_requests_running", "Requests running a strategy.",
                           lambda: self.limiter.running)
        self.metrics.gauge("testtime_gateway_requests_queued", "Requests waiting for a slot.",
                           lambda: self.limiter.waiting)
        self.metrics.gauge("testtime_gateway_requests_refused", "Requests refused as busy.",
                           lambda: self.limiter.refused)

    def job(self, problems: list[Problem], n: int, strategy: Any, spec: str,
            client_budget: str | None, seed: int | None, caller: Caller) -> Job:
        """A Job whose per-choice budget is the tightest of server, client and key limits."""
        if len(problems) * n > self.config.max_choices:
            raise ApiError(400, f"{len(problems)} prompt(s) × n={n} exceeds this server's "
                           f"limit of {self.config.max_choices} choices", "invalid_request", "n")
        budget = self.config.budget()
        if client_budget:
            try:
                budget = tighter(budget, Budget.parse(client_budget))
            except ValueError as exc:
                raise ApiError(400, f"bad budget: {exc}", "invalid_request",
                               "testtime.budget") from None
        if caller.remaining is not None:
            share = max(caller.remaining // (len(problems) * n), 1)
            budget = tighter(budget, Budget(total_tokens=share))
        return Job(problems, n, strategy, spec, budget, seed, caller)

    def context(self, job: Job, index: int) -> Context:
        """A fresh Context for choice ``index`` of ``job``."""
        seed = job.seed + index if job.seed is not None else secrets.randbits(31)
        ctx = Context(backend=self.backend, budget=job.budget, seed=seed, strategy=job.spec,
                      sampling=Sampling.of(job.strategy))
        job.contexts.append(ctx)
        return ctx

    async def run(self, job: Job, gone: Callable[[], Awaitable[bool]] | None = None,
                  poll: float = 0.5) -> list[Result]:
        """Solve every choice of ``job`` concurrently within the request deadline.

        With ``gone``, the work is cancelled as soon as it reports that the client left, so
        abandoned requests stop spending the engine's time.
        """
        pairs = [(p, self.context(job, i)) for i, p in enumerate(
            p for p in job.problems for _ in range(job.n))]
        with self.failures(job):
            async with asyncio.timeout(self.config.request_timeout):
                work = asyncio.ensure_future(asyncio.gather(
                    *(job.strategy.run(p, ctx) for p, ctx in pairs)))
                try:
                    while gone is not None and not work.done():
                        await asyncio.wait({work}, timeout=poll)
                        if not work.done() and await gone():
                            work.cancel()
                            raise ApiError(499, "client closed the request", "client_closed")
                    return list(await work)
                finally:
                    if not work.done():
                        work.cancel()
                        await asyncio.wait({work}, timeout=CANCEL_GRACE)

    def can_stream_tokens(self, job: Job) -> bool:
        """Whether ``job`` can stream tokens as generated (single strategy, streaming backend)."""
        return (isinstance(job.strategy, Single) and len(job.problems) * job.n == 1
                and bool(getattr(self.backend.capabilities, "streaming", False))
                and hasattr(self.backend, "stream"))

    async def stream_single(self, job: Job) -> AsyncGenerator[str | Result, None]:
        """Yield text pieces of the one sample of a ``single`` job, then its Result."""
        problem, ctx, strategy = job.problems[0], self.context(job, 0), job.strategy
        deadline = time.monotonic() + self.config.request_timeout
        prompt = problem.prompt()
        with self.failures(job):
            try:
                _, max_tokens = ctx.ledger.plan(1, strategy.max_tokens)
            except BudgetExhausted:
                yield ctx.result(problem, None, [])
                return
            if max_tokens != strategy.max_tokens:
                ctx.ledger.exhausted = True
            req = GenerationRequest(prompt=prompt, n=1, temperature=strategy.temperature,
                                    max_tokens=max_tokens, seed=ctx.next_seed()
                                    ).model_copy(update=ctx.sampling.chosen())
            pieces = self.backend.stream(req)  # type: ignore[attr-defined]
            try:
                while True:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError
                    item = await asyncio.wait_for(anext(pieces), timeout=left)
                    if isinstance(item, Generation):
                        ctx.ledger.record(item)
                        candidates = [ctx.candidate(prompt, c) for c in item.completions]
                        answer = candidates[0].answer if candidates else None
                        yield ctx.result(problem, answer, candidates)
                        return
                    yield item
            except StopAsyncIteration:
                raise BackendError("the backend's stream ended without a result") from None
            finally:
                await pieces.aclose()

    @contextmanager
    def failures(self, job: Job) -> Iterator[None]:
        """Map upstream failures to 502, deadlines to 504, bad specs to 400; charge the key."""
        try:
            yield
        except BackendError as exc:
            self.metrics.inc("testtime_gateway_upstream_errors_total",
                             "Requests failed by the upstream, by kind.", kind="error")
            raise ApiError(502, f"upstream failed: {exc}", "upstream_error") from None
        except TimeoutError:
            self.metrics.inc("testtime_gateway_upstream_errors_total",
                             "Requests failed by the upstream, by kind.", kind="timeout")
            raise ApiError(504, f"no answer within {self.config.request_timeout:g}s",
                           "timeout") from None
        except SpecError as exc:
            raise ApiError(400, str(exc), "invalid_strategy") from None
        finally:
            usage = job.usage()
            self.guard.charge(job.caller, usage.total_tokens)
