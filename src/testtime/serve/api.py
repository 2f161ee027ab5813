"""The HTTP endpoints: OpenAI chat/completions, responses and models, plus health and
metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

from testtime.budget import Budget
from testtime.serve.errors import ApiError
from testtime.serve.gateway import Gateway, Job, request_fields
from testtime.serve.mapping import chat_problem, completion_problems, new_id
from testtime.serve.protection import Caller, Lease
from testtime.serve.responses import Kind, Reply
from testtime.serve.responses_input import ResponsesRequest, chat_request, rename
from testtime.serve.responses_output import ResponsesEvents, ResponsesReply
from testtime.serve.routing import with_request_options
from testtime.serve.schemas import ChatCompletionRequest, CompletionRequest, TesttimeOptions
from testtime.serve.streaming import ChatEvents, EventFormat, strategy_events, token_events
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


@router.post("/v1/responses", response_model=None)
async def responses(body: ResponsesRequest, request: Request, who: Authed) -> Response:
    """OpenAI Responses API, answered as the chat completions request it maps onto."""
    mapped = chat_request(body)
    with mapped.renaming():
        chat = mapped.chat
        admitted = await admit(request, chat, [chat_problem(chat)],
                               chat.max_completion_tokens, who)
        admitted.job.param = rename(admitted.job.param, mapped.origins) or "model"
        reply = ResponsesReply.of(body, admitted.opts.details)
        return await answer(request, admitted, ResponsesEvents(reply), body.stream,
                            reply.body)


async def _serve(request: Request, body: ChatCompletionRequest | CompletionRequest,
                 problems: list[Problem], kind: Kind, max_tokens: int | None,
                 who: Caller) -> Response:
    admitted = await admit(request, body, problems, max_tokens, who)
    reply = Reply(kind, new_id("chatcmpl" if kind == "chat" else "cmpl"), body.model,
                  details=admitted.opts.details,
                  logprobs=bool(admitted.job.request.get("logprobs")))
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return await answer(request, admitted, ChatEvents(reply, include_usage), body.stream,
                        reply.body)


@dataclass
class Admitted:
    """A request let in: its job, the spec of its route, its options, the lease it holds."""

    job: Job
    spec: str
    opts: TesttimeOptions
    lease: Lease


async def admit(request: Request, body: ChatCompletionRequest | CompletionRequest,
                problems: list[Problem], max_tokens: int | None, who: Caller) -> Admitted:
    """Choose the strategy, build the job under its budgets, and take a slot and key lease.

    Every endpoint's request is admitted here (the Responses API's as the chat request it
    maps onto), so strategies, budgets and limits are the same everywhere.
    """
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
    return Admitted(job, route.spec, opts, Lease(slot.release, key_lease.release))


async def answer(request: Request, admitted: Admitted, fmt: EventFormat, stream: bool,
                 body: Callable[[list[Result]], dict[str, Any]]) -> Response:
    """Run an admitted job: streamed in ``fmt`` (tokens as generated where the strategy and
    backend can, else the answer when chosen), or as the JSON ``body`` of its results."""
    gw = gateway(request)
    job, lease = admitted.job, admitted.lease

    def done(results: list[Result]) -> None:
        usage = Usage.total([r.usage for r in results])
        gw.metrics.observe_usage(usage, admitted.spec)
        request.state.log.update(prompt_tokens=usage.prompt_tokens,
                                 generated_tokens=usage.generated_tokens,
                                 verifier_tokens=usage.verifier_tokens, calls=usage.calls)

    try:
        if stream and gw.can_stream_tokens(job):
            pieces = gw.stream(job)
            first = await anext(pieces)
            events = token_events(fmt, first, pieces, lambda r: done([r]), lease.release)
            return StreamingResponse(events, media_type="text/event-stream",
                                     headers=SSE_HEADERS, background=BackgroundTask(lease.release))
        if stream:
            if admitted.opts.progress:
                job.progress = asyncio.Queue()
            events = strategy_events(fmt, len(job.problems) * job.n, gw.run(job), job.progress,
                                     gw.config.keepalive, done, lease.release)
            return StreamingResponse(events, media_type="text/event-stream",
                                     headers=SSE_HEADERS, background=BackgroundTask(lease.release))
        results = await gw.run(job, request.is_disconnected)
    except BaseException:
        lease.release()
        raise
    lease.release()
    done(results)
    return JSONResponse(body(results))
