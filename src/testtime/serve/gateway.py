"""The gateway's engine room: run a strategy for a request under budget, deadline and limits.

Each choice of each prompt gets its own Context (ledger, seed), so usage is exact per request
and also charged to the caller's key when the request fails halfway. Upstream failures become
502, deadlines 504, and neither affects other requests.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from contextlib import aclosing, contextmanager
from dataclasses import dataclass, field
from typing import Any

from testtime.backends.base import Backend, BackendError, UnsupportedRequest
from testtime.budget import Budget
from testtime.code.problems import CodeProblemError
from testtime.metered import prompt_estimate
from testtime.policy import PolicyError
from testtime.registry import SpecError
from testtime.serve.config import ServeConfig
from testtime.serve.errors import ApiError
from testtime.serve.metrics import Metrics
from testtime.serve.protection import Caller, GuardFactory, KeyGuard, Limiter
from testtime.serve.routing import Router
from testtime.strategies.base import Context, StrategySettings, open_context, strategies
from testtime.strategies.voting import tally
from testtime.types import Candidate, Problem, Result, Usage
from testtime.verifiers.base import UnfitProblem
from testtime.verifiers.verdicts import JudgeError

log = logging.getLogger("testtime.serve")
CANCEL_GRACE = 5.0  # seconds a timed-out or abandoned request waits for its work to stop


def client_budget_of(text: str) -> Budget:
    """The Budget a request asks for; a 400 naming ``testtime.budget`` if it does not parse."""
    try:
        budget = Budget.parse(text)
    except (ValueError, OverflowError) as exc:
        raise ApiError(400, f"bad budget: {exc}", "invalid_request", "testtime.budget") from None
    for name, value in budget.model_dump().items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ApiError(400, f"bad budget: {name} must be a finite number",
                           "invalid_request", "testtime.budget")
    return budget


def check_fits(strategy: StrategySettings, problems: list[Problem], param: str = "model") -> None:
    """Refuse (400) a strategy whose own verifier cannot score these problems."""
    verifier = strategy.own_verifier
    if verifier is None:
        return
    name = getattr(verifier, "spec", type(verifier).__name__)
    if getattr(verifier, "needs_reference", False) and any(p.reference is None for p in problems):
        raise ApiError(400, f"verifier {name!r} needs a reference answer, which a request "
                       "does not carry", "invalid_strategy", param)
    kinds = getattr(verifier, "problem_kinds", ())
    if kinds and any(p.kind not in kinds for p in problems):
        raise ApiError(400, f"verifier {name!r} scores only {'/'.join(kinds)} problems; "
                       "this request is free text", "invalid_strategy", param)


WHOLE_REPLY_FIELDS = ("stop", "logprobs", "top_logprobs", "tools", "response_format")
"""Request fields that mean what the client meant only where every sample is a whole reply."""


def request_fields(body: Any, strategy: StrategySettings,
                   problems: list[Problem]) -> dict[str, Any]:
    """The request's sampling options for every generation (``Context.request``).

    Refuses (400 naming the field) an OpenAI field testtime does not honour, and a field the
    chosen strategy cannot honour: stop strings, logprobs, tools and response formats apply
    only to strategies that declare they sample whole replies.
    """
    from testtime.serve.schemas import UNSUPPORTED

    for name, value in (body.model_extra or {}).items():
        neutral = UNSUPPORTED.get(name)
        if name == "logprobs" and not hasattr(type(body), "messages"):
            neutral = (None, 0)
        if neutral is not None and value not in neutral:
            raise ApiError(400, f"{name} is not supported by this gateway; leave it unset",
                           "unsupported_parameter", name)
    stops = body.stops()
    if len(stops) > 4 or any(not s or len(s) > 256 for s in stops):
        raise ApiError(400, "stop must be at most 4 non-empty strings of up to 256 "
                       "characters", "invalid_request", "stop")
    out: dict[str, Any] = {}
    if stops:
        out["stop"] = stops
    if getattr(body, "logprobs", None) or getattr(body, "top_logprobs", None):
        out["logprobs"] = True
        out["top_logprobs"] = body.top_logprobs or 0
    if not strategy.samples_whole_replies():
        asked = {k for k in WHOLE_REPLY_FIELDS if k in out}
        asked |= {k for k in ("tools", "response_format")
                  for p in problems if getattr(p.options, k)}
        for field_name in WHOLE_REPLY_FIELDS:
            if field_name in asked:
                raise ApiError(400, f"{field_name} cannot be honoured by strategy "
                               f"{strategy.registered_name!r}, which does not sample whole "
                               f"replies; use one of {', '.join(whole_reply_strategies())}",
                               "unsupported_parameter", field_name)
    return out


def whole_reply_strategies() -> list[str]:
    """The registered strategies that declare they sample whole replies."""
    return [name for name in strategies.names() if strategies.get(name).whole_replies]


@dataclass
class Job:
    """One request's work: problems × n choices of one strategy, under one budget per choice."""

    problems: list[Problem]
    n: int
    strategy: StrategySettings
    spec: str
    budget: Budget
    seed: int | None
    caller: Caller
    request_id: str = "-"
    param: str = "model"
    request: dict[str, Any] = field(default_factory=dict)
    progress: asyncio.Queue[dict[str, Any]] | None = None
    contexts: list[Context] = field(default_factory=list)
    sampled: dict[int, list[Candidate]] = field(default_factory=dict)

    def usage(self) -> Usage:
        """What the job has spent so far, over every choice."""
        return Usage.total([c.ledger.usage for c in self.contexts])

    def on_sample(self, index: int, candidates: Any) -> None:
        """Note choice ``index``'s new candidates and report progress, if asked to."""
        seen = self.sampled.setdefault(index, [])
        seen += candidates
        if self.progress is None:
            return
        rows = tally(seen)
        self.progress.put_nowait({
            "choice": index, "samples": len(seen),
            "leader": rows[0][0] if rows else None,
            "leader_votes": rows[0][1] if rows else 0,
            "tokens": self.usage().total_tokens})


class Gateway:
    """Holds the backend, router, key guard, limiter and metrics of one running server.

    ``metrics`` and ``guard`` (a KeyGuard class or factory) default to this process's own; a
    gateway replicated on Ray passes ones whose counts are shared by every replica.
    """

    def __init__(self, config: ServeConfig, backend: Backend, router: Router,
                 metrics: Metrics | None = None, guard: GuardFactory = KeyGuard) -> None:
        self.config = config
        self.backend = backend
        self.router = router
        self.metrics = metrics if metrics is not None else Metrics()
        self.guard = guard(config.keys(), on_refuse=self.refused)
        self.limiter = Limiter(config.max_concurrency, config.max_queue, config.queue_timeout)
        self.tools = config.tools.resolve()
        self.started = time.time()
        self.metrics.gauge("testtime_gateway_requests_running", "Requests running a strategy.",
                           lambda: self.limiter.running)
        self.metrics.gauge("testtime_gateway_requests_queued", "Requests waiting for a slot.",
                           lambda: self.limiter.waiting)
        self.metrics.gauge("testtime_gateway_requests_refused", "Requests refused as busy.",
                           lambda: self.limiter.refused)

    def refused(self, key: str, reason: str) -> None:
        """Count a request refused for ``key`` (its label) by one of its limits."""
        self.metrics.inc("testtime_gateway_key_refusals_total",
                         "Requests refused by a key's limits, by key name and reason.",
                         key=key, reason=reason)

    def job(self, problems: list[Problem], n: int, strategy: StrategySettings, spec: str,
            client_budget: str | None, seed: int | None, caller: Caller,
            request_id: str = "-", param: str = "model", preset: Budget | None = None) -> Job:
        """A Job whose per-choice budget combines the server's cap, the ``preset`` of the
        request's reasoning effort, the request's own budget and the key's remaining share."""
        if len(problems) * n > self.config.max_choices:
            raise ApiError(400, f"{len(problems)} prompt(s) × n={n} exceeds this server's "
                           f"limit of {self.config.max_choices} choices", "invalid_request", "n")
        check_fits(strategy, problems, param)
        self.check_tools(strategy, param)
        asked = client_budget_of(client_budget) if client_budget else None
        key_share = None
        if caller.remaining is not None:
            share = max(caller.remaining // (len(problems) * n), 1)
            prompt = max(prompt_estimate(p.prompt()) for p in problems)
            if share <= prompt:
                self.guard.refuse_short(caller, prompt * len(problems) * n)
            key_share = Budget(total_tokens=share)
        budget = Budget.combine(self.config.budget(), preset, asked, key_share)
        return Job(problems, n, strategy, spec, budget, seed, caller, request_id, param)

    def check_tools(self, strategy: StrategySettings, param: str = "model") -> None:
        """Refuse (400) a strategy that names a tool the operator did not enable."""
        missing = sorted(set(strategy.wants_tools()) - set(self.tools))
        if missing:
            raise ApiError(400, f"tool(s) {', '.join(missing)} are not enabled on this server; "
                           f"enabled: {', '.join(sorted(self.tools)) or 'none'}",
                           "tool_not_enabled", param)

    def context(self, job: Job, index: int) -> Context:
        """A fresh Context for choice ``index`` of ``job``, offering the enabled tools."""
        seed = job.seed + index if job.seed is not None else secrets.randbits(31)
        ctx = open_context(job.strategy, self.backend, spec=job.spec, budget=job.budget,
                           seed=seed, request=job.request,
                           on_sample=lambda cands: job.on_sample(index, cands),
                           tools=self.tools)
        job.contexts.append(ctx)
        return ctx

    async def run(self, job: Job, gone: Callable[[], Awaitable[bool]] | None = None,
                  poll: float = 0.5) -> list[Result]:
        """Solve every choice of ``job`` concurrently within the request deadline.

        With ``gone``, the work is cancelled as soon as it reports that the client left, so
        abandoned requests stop spending the engine's time.
        """
        with self.failures(job):
            pairs = [(p, self.context(job, i)) for i, p in enumerate(
                p for p in job.problems for _ in range(job.n))]
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
        """Whether ``job`` can stream tokens as generated: one choice of a strategy that
        declares it streams tokens, on a streaming backend, with no tools or logprobs."""
        return (job.strategy.streams_tokens and len(job.problems) * job.n == 1
                and not job.problems[0].options.tools and not job.request.get("logprobs")
                and bool(getattr(self.backend.capabilities, "streaming", False))
                and hasattr(self.backend, "stream"))

    async def stream(self, job: Job) -> AsyncGenerator[str | Result, None]:
        """Yield what the one choice of ``job`` streams (its text pieces), then its Result,
        within the request deadline."""
        deadline = time.monotonic() + self.config.request_timeout
        with self.failures(job):
            ctx = self.context(job, 0)
            async with aclosing(job.strategy.stream(job.problems[0], ctx)) as pieces:
                while True:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError
                    item = await asyncio.wait_for(anext(pieces), timeout=left)
                    yield item
                    if isinstance(item, Result):
                        return

    @contextmanager
    def failures(self, job: Job) -> Iterator[None]:
        """Map upstream failures to 502, deadlines to 504, bad specs to 400; charge the key."""
        try:
            yield
        except UnsupportedRequest as exc:
            raise ApiError(400, f"the model cannot honour this request: {exc}",
                           "unsupported_parameter") from None
        except BackendError as exc:
            self.metrics.inc("testtime_gateway_upstream_errors_total",
                             "Requests failed by the upstream, by kind.", kind="error")
            log.warning("upstream failed", extra={"request_id": job.request_id,
                                                  "error": str(exc)})
            raise ApiError(502, f"upstream failed (request {job.request_id}; the server log "
                           "has the details)", "upstream_error") from None
        except TimeoutError:
            self.metrics.inc("testtime_gateway_upstream_errors_total",
                             "Requests failed by the upstream, by kind.", kind="timeout")
            raise ApiError(504, f"no answer within {self.config.request_timeout:g}s",
                           "timeout") from None
        except SpecError as exc:
            raise ApiError(400, str(exc), "invalid_strategy", job.param) from None
        except PolicyError as exc:
            log.warning("unusable policy", extra={"request_id": job.request_id,
                                                  "error": str(exc)})
            raise ApiError(400, f"the strategy's policy cannot be used (request "
                           f"{job.request_id}; the server log has the details)",
                           "invalid_strategy", job.param) from None
        except (UnfitProblem, CodeProblemError, JudgeError) as exc:
            raise ApiError(400, f"the strategy cannot answer this request: {exc}",
                           "invalid_strategy", job.param) from None
        finally:
            usage = job.usage()
            self.guard.charge(job.caller, usage.total_tokens)
