"""The HTTP endpoints: OpenAI chat/completions and models, plus health and metrics."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

from testtime.budget import Budget
from testtime.serve.errors import ApiError
from testtime.serve.gateway import Gateway, request_fields
from testtime.serve.mapping import chat_problem, completion_problems, new_id
from testtime.serve.protection import Caller, Lease
from testtime.serve.responses import Kind, Reply
from testtime.serve.routing import with_request_options
from testtime.serve.schemas import ChatCompletionRequest, CompletionRequest, TesttimeOptions
from testtime.serve.streaming import strategy_events, token_events
from testtime.types import Problem, Result, Usage

router = APIRouter()
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def gateway(request: Request) -> Gateway:
    """The running Gateway."""
    gw: Gateway = request.app.state.gateway
    return gw


def caller(request: Request,
           authorization: Annotated[str | None, Header()] = None) -> Caller:
    """Authenticate the request's bearer key (no-op when the server has no keys)."""
    who = gateway(request).guard.authenticate(authorization)
    request.state.log["key"] = who.label
    return who


Authed = Annotated[Caller, Depends(caller)]


@router.get("/health")
async def health(request: Request) -> dict[str, Any]:
    """Liveness plus what is served and how busy the server is."""
    gw = gateway(request)
    return {"status": "ok", "backend": gw.backend.name.partition(":")[0],
            "model": gw.router.upstream_model,
            "upstream_ready": request.app.state.upstream_ready,
            "running": gw.limiter.running, "queued": gw.limiter.waiting,
            "uptime_s": round(time.time() - gw.started, 1)}


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(request: Request) -> PlainTextResponse:
    """Prometheus text exposition."""
    return PlainTextResponse(gateway(request).metrics.render(),
                             media_type="text/plain; version=0.0.4")


@router.get("/v1/models")
async def list_models(request: Request, who: Authed) -> dict[str, Any]:
    """The upstream model, configured aliases and ``STRATEGY@MODEL`` names."""
    return {"object": "list", "data": gateway(request).router.models()}


@router.get("/v1/models/{model_id:path}")
async def get_model(model_id: str, request: Request, who: Authed) -> dict[str, Any]:
    """One entry of ``/v1/models``."""
    for entry in gateway(request).router.models():
        if entry["id"] == model_id:
            return entry
    raise ApiError(404, f"model {model_id!r} does not exist", "model_not_found", "model")


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(body: ChatCompletionRequest, request: Request,
                           who: Authed) -> Response:
    """OpenAI chat completions, answered by the chosen test-time strategy."""
    max_tokens = body.max_completion_tokens or body.max_tokens
    return await _serve(request, body, [chat_problem(body)], "chat", max_tokens, who)


@router.post("/v1/completions", response_model=None)
async def completions(body: CompletionRequest, request: Request, who: Authed) -> Response:
    """OpenAI (legacy) completions; each prompt is a question for the strategy."""
    return await _serve(request, body, completion_problems(body), "completion",
                        body.max_tokens, who)


async def _serve(request: Request, body: ChatCompletionRequest | CompletionRequest,
                 problems: list[Problem], kind: Kind, max_tokens: int | None,
                 who: Caller) -> Response:
    gw = gateway(request)
    key_lease = gw.guard.admit(who)
    try:
        opts = body.testtime or TesttimeOptions()
        effort = getattr(body, "reasoning_effort", None)
        preset_budget = None
        if opts.strategy is None and gw.router.is_auto(body.model):
            route = gw.router.auto_route(effort)
        elif effort is not None and opts.strategy is None:
            route, preset_budget = gw.router.resolve_effort(effort)
        else:
            route = gw.router.resolve(body.model, opts.strategy)
        request.state.log["strategy"] = route.spec
        strategy = with_request_options(route.strategy, temperature=body.temperature,
                                        max_tokens=max_tokens,
                                        rules=gw.router.client_rules if route.client else None,
                                        **body.sampling().chosen())
        seed = opts.seed if opts.seed is not None else (
            body.seed % 2**31 if body.seed is not None else None)
        job = gw.job(problems, body.n, strategy, route.public, opts.budget, seed, who,
                     request_id=str(getattr(request.state, "request_id", "-")),
                     param=route.param,
                     preset=Budget.parse(preset_budget) if preset_budget else None)
        job.request = request_fields(body, strategy, problems)
        try:
            slot = await gw.limiter.acquire()
        except ApiError:
            if who.key is not None:
                gw.refused(who.label, "busy")
            raise
    except BaseException:
        key_lease.release()
        raise
    lease = Lease(slot.release, key_lease.release)
    reply = Reply(kind, new_id("chatcmpl" if kind == "chat" else "cmpl"), body.model,
                  details=opts.details, logprobs=bool(job.request.get("logprobs")))
    include_usage = bool(body.stream_options and body.stream_options.include_usage)

    def done(results: list[Result]) -> None:
        usage = Usage.total([r.usage for r in results])
        gw.metrics.observe_usage(usage, route.spec)
        request.state.log.update(prompt_tokens=usage.prompt_tokens,
                                 generated_tokens=usage.generated_tokens,
                                 verifier_tokens=usage.verifier_tokens, calls=usage.calls)

    try:
        if body.stream and gw.can_stream_tokens(job):
            pieces = gw.stream(job)
            first = await anext(pieces)
            events = token_events(reply, first, pieces, include_usage,
                                  lambda r: done([r]), lease.release)
            return StreamingResponse(events, media_type="text/event-stream",
                                     headers=SSE_HEADERS, background=BackgroundTask(lease.release))
        if body.stream:
            if opts.progress:
                job.progress = asyncio.Queue()
            events = strategy_events(reply, len(problems) * body.n, gw.run(job), job.progress,
                                     gw.config.keepalive, include_usage, done, lease.release)
            return StreamingResponse(events, media_type="text/event-stream",
                                     headers=SSE_HEADERS, background=BackgroundTask(lease.release))
        results = await gw.run(job, request.is_disconnected)
    except BaseException:
        lease.release()
        raise
    lease.release()
    done(results)
    return JSONResponse(reply.body(results))
