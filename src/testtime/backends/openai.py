"""Any OpenAI-compatible server: vLLM, SGLang, llama.cpp's server, hosted APIs.

Uses ``n`` where the server honours it and falls back to concurrent requests where it does not
(detected from the first reply). Servers disagree on ``usage`` when ``n > 1`` (llama.cpp counts
one choice, vLLM and OpenAI count all), so each choice is counted on its own:

- llama.cpp's server (detected from ``/models``): requests with ``n > 1`` are streamed, and the
  final chunk of each choice carries the engine's ``timings.predicted_n`` — exact per choice.
  (Its logprobs are not: tokens that end inside a UTF-8 character are merged into one entry.)
- requests to a llama.cpp server are admitted only while all their samples fit in its free
  slots (``/props`` tells how many): it reserves one slot per sample, and requests that each
  hold part of what they need can wait on each other forever.
- other servers: token logprobs are requested with ``n > 1`` and each choice is counted from
  them, cross-checked against ``usage``.

``stream`` streams one completion (``stream: true``) piece by piece with its tokens' logprobs,
for online trace control; closing it closes the connection, so the server stops generating.

``Generation.counted_by`` records which source was used.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal

import httpx
from pydantic import Field

from testtime.backends.base import (
    BackendError,
    BackendSettings,
    Capabilities,
    UnsupportedRequest,
    backends,
    join_completions,
    part_request,
    stream_pieces,
)
from testtime.backends.openai_format import ToolCallDeltas, chat_request, top_dict
from testtime.budget import CostModel, ModelShape, stopped_sink
from testtime.types import Completion, Generation, GenerationRequest, Piece, ToolCall

RETRYABLE = {408, 409, 429, 500, 502, 503, 504}


class OpenAISettings(BackendSettings):
    """Options of ``openai:URL,model=…,mode=chat|completions,…``."""

    url: str = "http://127.0.0.1:8000/v1"
    model: str | None = None
    api_key: str | None = None
    mode: Literal["chat", "completions"] = "chat"
    n_mode: Literal["auto", "native", "concurrent"] = "auto"
    max_n: int = Field(default=16, ge=1)
    concurrency: int = Field(default=64, ge=1)
    timeout: float = Field(default=600.0, gt=0)
    retries: int = Field(default=3, ge=0)
    backoff: float = Field(default=0.5, ge=0)
    continue_flags: bool = Field(
        default=False,
        description="send vLLM's continue_final_message/add_generation_prompt for prefixes")
    params: float | None = Field(
        default=None, gt=0, description="the model's parameters, for FLOPs; default: what a "
        "llama.cpp server reports, else unknown")
    layers: int = Field(default=0, ge=0, description="the model's layers (attention FLOPs)")
    width: int = Field(default=0, ge=0, description="the model's hidden size")
    stream: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="stream replies; auto streams n>1 requests to llama.cpp servers, whose "
                    "streamed choices carry exact token counts")

    positional = "url"


@backends.register("openai")
class OpenAIBackend:
    """Client of an OpenAI-compatible HTTP server, with retries, backoff and honest counting."""

    Settings = OpenAISettings

    def __init__(self, settings: OpenAISettings | None = None, *,
                 transport: httpx.AsyncBaseTransport | None = None, **kwargs: Any) -> None:
        self.settings = settings or OpenAISettings(**kwargs)
        s = self.settings
        self.name = f"openai:{s.url}"
        self.capabilities = Capabilities(max_n=s.max_n if s.n_mode != "concurrent" else 1,
                                         logprobs=True, prefix_cache=True,
                                         max_parallel=s.concurrency, streaming=False)
        self.cost = CostModel(shape_of(s.params, s.layers, s.width))
        key = s.api_key or os.environ.get("TESTTIME_API_KEY") or os.environ.get(
            "OPENAI_API_KEY") or "none"
        self._client = httpx.AsyncClient(
            base_url=s.url.rstrip("/"), timeout=httpx.Timeout(s.timeout, connect=10.0),
            headers={"Authorization": f"Bearer {key}"},
            limits=httpx.Limits(max_connections=s.concurrency), transport=transport)
        self._limit = asyncio.Semaphore(s.concurrency)
        self._native_n: bool | None = {"auto": None, "native": True,
                                       "concurrent": False}[s.n_mode]
        self._model: str | None = s.model
        self._llamacpp: bool | None = None
        self._slots: AsyncSlotGate | None = None

    async def model_name(self) -> str:
        """The served model: from settings, else the first one the server lists."""
        if self._llamacpp is None:
            await self._probe()
        if self._model is None:
            raise BackendError(f"{self.settings.url} lists no models; pass model=NAME")
        return self._model

    async def _probe(self) -> None:
        """Ask ``/models`` which model is served and whether the server is llama.cpp's."""
        try:
            data = await self._request("GET", "/models")
        except BackendError:
            if self._model is None:
                raise
            self._llamacpp = False
            return
        models = [m for m in data.get("data") or [] if isinstance(m, dict)]
        self._llamacpp = any(m.get("owned_by") == "llamacpp" for m in models)
        if self._model is None and models:
            self._model = str(models[0].get("id"))
        if not self.cost.known:
            served = next((m for m in models if str(m.get("id")) == self._model), None)
            meta = (served or {}).get("meta") or {}
            self.cost = CostModel(shape_of(meta.get("n_params"), self.settings.layers,
                                           self.settings.width or meta.get("n_embd") or 0,
                                           meta.get("size")))
        if self._llamacpp:
            root = self.settings.url.rstrip("/").removesuffix("/v1")
            try:
                props = await self._request("GET", f"{root}/props")
                slots = int(props.get("total_slots") or 0)
            except (BackendError, ValueError, TypeError):
                slots = 0
            if slots > 0:
                self._slots = AsyncSlotGate(slots)
                self.capabilities = self.capabilities.model_copy(
                    update={"max_n": min(self.capabilities.max_n, slots)})

    def _streams(self, n: int) -> bool:
        mode = self.settings.stream
        return mode == "on" or (mode == "auto" and n > 1 and bool(self._llamacpp))

    async def ready(self) -> None:
        """Reach the server and learn the model name."""
        await self.model_name()

    async def generate(self, req: GenerationRequest) -> Generation:
        """Sample ``req.n`` completions with native ``n`` or concurrent single requests."""
        if req.n == 1 or self._native_n is False:
            return await self._concurrent(req)
        n_max = self.capabilities.max_n
        parts = list(await asyncio.gather(*(
            self._one(part_request(req, i, min(n_max, req.n - i)), min(n_max, req.n - i))
            for i in range(0, req.n, n_max))))
        got = sum(len(p.completions) for p in parts)
        if got < req.n:
            if self._native_n is None:
                self._native_n = False
            parts.append(await self._concurrent(part_request(req, got, req.n - got)))
        elif self._native_n is None:
            self._native_n = True
        return parts[0] if len(parts) == 1 else join_completions(parts, parts[0].counted_by)

    async def _concurrent(self, req: GenerationRequest) -> Generation:
        parts = await asyncio.gather(*(self._one(part_request(req, i, 1), 1)
                                       for i in range(req.n)))
        return parts[0] if len(parts) == 1 else join_completions(list(parts), parts[0].counted_by)

    def _body(self, req: GenerationRequest, n: int, model: str,
              stream: bool = False) -> tuple[str, dict[str, Any]]:
        want_logprobs = req.logprobs or (n > 1 and not self._streams(n))
        if self.settings.mode == "chat":
            body = chat_request(req.prompt, req.model_copy(update={"logprobs": want_logprobs}), n)
            if req.prompt.prefix and self.settings.continue_flags:
                body.update(continue_final_message=True, add_generation_prompt=False)
            path = "/chat/completions"
        else:
            if req.prompt.options.body():
                raise UnsupportedRequest("a backend in mode=completions cannot send tools or "
                                         "a response format; use mode=chat")
            text = "\n\n".join(m.content for m in req.prompt.messages)
            text += "\n\n" + req.prompt.prefix if req.prompt.prefix else "\n\n"
            body = {"prompt": text, "n": n, "max_tokens": req.max_tokens,
                    "temperature": req.temperature, **req.chosen()}
            if req.stop:
                body["stop"] = list(req.stop)
            if req.seed is not None:
                body["seed"] = req.seed
            if want_logprobs or req.top_logprobs:
                body["logprobs"] = max(1, req.top_logprobs)
            path = "/completions"
        body["model"] = model
        if "repeat_penalty" in body and not self._llamacpp:
            body["repetition_penalty"] = body.pop("repeat_penalty")  # vLLM's and SGLang's name
        if stream or self._streams(n):
            body["stream"] = True
            if stream and not self._llamacpp:
                body["stream_options"] = {"include_usage": True}
            if self._llamacpp:
                body["timings_per_token"] = True
        return path, body

    def stream(self, req: GenerationRequest) -> AsyncIterator[Piece | Generation]:
        """Stream one completion (``stream: true``) piece by piece, then its Generation.

        Closing the stream closes the connection, which makes the server stop generating;
        what it had streamed (llama.cpp's per-token timings, else one token per chunk) is
        reported as stopped work.
        """
        def call(emit: Callable[[Piece], None]) -> Awaitable[Generation]:
            return self._one(req.model_copy(update={"n": 1}), 1, on_piece=emit)

        return stream_pieces(call, 5.0)

    async def _one(self, req: GenerationRequest, n: int,
                   on_piece: Callable[[Piece], None] | None = None) -> Generation:
        model = await self.model_name()
        path, body = self._body(req, n, model, stream=on_piece is not None)
        started = time.monotonic()
        sink = stopped_sink()
        partial: dict[int, dict[str, Any]] = {}
        async with self._limit:
            if self._slots is not None:
                await self._slots.acquire(n)
            try:
                data = await self._request("POST", path, body, stream=bool(body.get("stream")),
                                           partial=partial, on_piece=on_piece)
            except asyncio.CancelledError:
                if sink is not None:
                    sink(stopped_generation(partial, bool(body.get("stream")),
                                            time.monotonic() - started))
                raise
            finally:
                if self._slots is not None:
                    self._slots.release(n)
        return self._parse(data, req, n, time.monotonic() - started)

    def _parse(self, data: dict[str, Any], req: GenerationRequest, n: int,
               seconds: float) -> Generation:
        choices = sorted(data.get("choices") or [], key=lambda c: c.get("index", 0))
        if not choices:
            raise BackendError(f"server reply has no choices: {str(data)[:300]}")
        usage = data.get("usage") or {}
        completions = []
        per_choice = True
        timed = all("predicted_n" in (c.get("timings") or {}) for c in choices)
        for c in choices:
            calls: tuple[ToolCall, ...] = ()
            reasoning = None
            if self.settings.mode == "chat":
                message = c.get("message") or {}
                text = message.get("content") or ""
                calls = message_tool_calls(message)
                reasoning = message.get("reasoning_content") or message.get("reasoning")
                content = (c.get("logprobs") or {}).get("content") or []
                lps = [t["logprob"] for t in content]
                tops = [top_dict(t.get("top_logprobs")) for t in content]
                toks = [str(t.get("token", "")) for t in content]
            else:
                text = c.get("text") or ""
                lps = list((c.get("logprobs") or {}).get("token_logprobs") or [])
                tops = [top_dict(t) for t in (c.get("logprobs") or {}).get("top_logprobs") or []]
                toks = [str(t) for t in (c.get("logprobs") or {}).get("tokens") or []]
            if req.prompt.prefix and text.startswith(req.prompt.prefix):
                text = text[len(req.prompt.prefix):]
            per_choice &= bool(lps) or not text
            completions.append(Completion(
                text=text, finish_reason=c.get("finish_reason") or "stop",
                generated_tokens=int(c["timings"]["predicted_n"]) if timed else len(lps),
                logprobs=tuple(float(x) for x in lps) if req.logprobs else None,
                top_logprobs=tuple(tops) if req.top_logprobs else None,
                tokens=tuple(toks) if req.logprobs and len(toks) == len(lps) else None,
                tool_calls=calls, reasoning=reasoning or None))
        reported = int(usage.get("completion_tokens") or 0)
        if timed:
            counted_by = "engine timings per choice (streamed)"
        elif len(completions) == 1 and reported:
            completions[0] = completions[0].model_copy(update={"generated_tokens": reported})
            counted_by = "server-usage"
        elif per_choice:
            counted = sum(c.generated_tokens for c in completions)
            counted_by = ("server-usage, checked per choice" if counted == reported
                          else "logprobs per choice (server usage disagreed)")
        else:
            share = reported // max(len(completions), 1)
            completions = [c.model_copy(update={"generated_tokens": share}) for c in completions]
            counted_by = "server-usage split evenly (no per-choice counts)"
        details = usage.get("prompt_tokens_details") or {}
        prompt_tokens = int(usage.get("prompt_tokens") or 0)
        cached = int(details.get("cached_tokens") or 0)
        if timed and not usage:
            first = choices[0]["timings"]
            cached = int(first.get("cache_n") or 0)
            prompt_tokens = cached + int(first.get("prompt_n") or 0)
        return Generation(
            completions=tuple(completions), prompt_tokens=prompt_tokens, cached_tokens=cached,
            seconds=seconds, counted_by=counted_by)

    async def _request(self, method: str, path: str, body: Any = None, *,
                       stream: bool = False,
                       partial: dict[int, dict[str, Any]] | None = None,
                       on_piece: Callable[[Piece], None] | None = None) -> dict[str, Any]:
        """Send one request with retries and backoff; a streamed reply is assembled."""
        s = self.settings
        last: str = ""
        connected = False
        for attempt in range(s.retries + 1):
            try:
                async with self._client.stream(method, path, json=body) as resp:
                    connected = True
                    if resp.status_code < 400:
                        if stream:
                            return await _assemble(resp, {} if partial is None else partial,
                                                   on_piece)
                        return await _json(resp)
                    await resp.aread()
                    last = f"HTTP {resp.status_code}: {resp.text[:300]}"
                    if resp.status_code not in RETRYABLE:
                        raise BackendError(f"{s.url}{path} failed: {last}")
            except ValueError as exc:
                raise BackendError(f"{s.url}{path} answered something that is not "
                                   f"JSON: {exc}") from None
            except (httpx.TransportError, httpx.TimeoutException) as exc:
                last = f"{type(exc).__name__}: {exc}".rstrip(": ")
            if attempt < s.retries:
                await asyncio.sleep(s.backoff * 2**attempt * (1 + random.random() / 2))
        if not connected:
            raise BackendError(f"cannot reach {s.url}{path} after {s.retries + 1} tries "
                               f"(is the server running?): {last}")
        raise BackendError(f"{s.url}{path} failed after {s.retries + 1} tries: {last}")

    async def close(self) -> None:
        """Close the HTTP connections."""
        await self._client.aclose()


class AsyncSlotGate:
    """Admits requests only while all their samples fit in the server's free slots, FIFO."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.free = slots
        self._cond = asyncio.Condition()
        self._queue: deque[object] = deque()
        self._pending: set[asyncio.Future[None]] = set()

    async def acquire(self, n: int) -> None:
        """Wait until ``n`` slots (at most all of them) are free and this request is first."""
        n = min(n, self.slots)
        ticket = object()
        async with self._cond:
            self._queue.append(ticket)
            await self._cond.wait_for(lambda: self._queue[0] is ticket and self.free >= n)
            self._queue.popleft()
            self.free -= n
            self._cond.notify_all()

    def release(self, n: int) -> None:
        """Return ``n`` slots."""
        self.free += min(n, self.slots)
        task = asyncio.ensure_future(self._notify())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _notify(self) -> None:
        async with self._cond:
            self._cond.notify_all()


async def _json(resp: httpx.Response) -> dict[str, Any]:
    await resp.aread()
    data = resp.json()
    if not isinstance(data, dict):
        raise ValueError(f"expected an object, got {str(data)[:200]}")
    return data


def chunk_piece(c: dict[str, Any], piece: str) -> Piece:
    """The Piece one streamed choice chunk brings: its text and its tokens' logprobs."""
    lp = c.get("logprobs") or {}
    if lp.get("content"):
        entries = lp["content"]
        return Piece(text=piece, logprobs=tuple(float(t["logprob"]) for t in entries),
                     top_logprobs=tuple(top_dict(t.get("top_logprobs")) for t in entries),
                     tokens=tuple(str(t.get("token", "")) for t in entries))
    lps = lp.get("token_logprobs") or []
    return Piece(text=piece, logprobs=tuple(float(x) for x in lps),
                 top_logprobs=tuple(top_dict(t) for t in lp.get("top_logprobs") or []),
                 tokens=tuple(str(t) for t in lp.get("tokens") or []))


async def _assemble(resp: httpx.Response, choices: dict[int, dict[str, Any]],
                    on_piece: Callable[[Piece], None] | None = None) -> dict[str, Any]:
    """Join a server-sent-events reply into the shape of a non-streamed one.

    Choices are built up in ``choices`` as chunks arrive, so a stream that is stopped still
    shows what came. Each choice keeps the ``timings`` of its latest chunk (llama.cpp's exact
    per-choice counts) and how many chunks carried its text. ``on_piece`` is handed each
    chunk's text and token logprobs as it comes.
    """
    usage: dict[str, Any] = {}
    async for line in resp.aiter_lines():
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        if payload == "[DONE]":
            break
        chunk = json.loads(payload)
        if not isinstance(chunk, dict):
            raise ValueError(f"expected an object, got {payload[:200]}")
        if "error" in chunk:
            raise BackendError(f"server error in stream: {str(chunk['error'])[:300]}")
        usage = chunk.get("usage") or usage
        for c in chunk.get("choices") or ():
            i = int(c.get("index", 0))
            out = choices.setdefault(i, {"index": i, "message": {"content": ""}, "text": "",
                                         "logprobs": {"content": [], "token_logprobs": []},
                                         "chunks": 0})
            delta = c.get("delta") or {}
            piece = (delta.get("content") or "") + (c.get("text") or "")
            out["chunks"] += bool(piece)
            out["message"]["content"] += delta.get("content") or ""
            thought = delta.get("reasoning_content") or delta.get("reasoning")
            if thought:
                out["message"]["reasoning_content"] = (
                    out["message"].get("reasoning_content", "") + thought)
            if delta.get("tool_calls"):
                out.setdefault("_calls", ToolCallDeltas()).add(delta["tool_calls"])
            out["text"] += c.get("text") or ""
            lp = c.get("logprobs") or {}
            out["logprobs"]["content"] += lp.get("content") or []
            out["logprobs"]["token_logprobs"] += lp.get("token_logprobs") or []
            if chunk.get("timings"):
                out["timings"] = chunk["timings"]
            if on_piece is not None and (piece or lp):
                on_piece(chunk_piece(c, piece))
            if c.get("finish_reason"):
                out["finish_reason"] = c["finish_reason"]
    for out in choices.values():
        assembled = out.pop("_calls", None)
        if assembled is not None:
            out["message"]["tool_calls"] = [
                {"id": t.id, "type": "function",
                 "function": {"name": t.name, "arguments": t.arguments}}
                for t in assembled.done()]
    return {"choices": [choices[i] for i in sorted(choices)], "usage": usage}


def message_tool_calls(message: dict[str, Any]) -> tuple[ToolCall, ...]:
    """The ``tool_calls`` of an OpenAI reply message."""
    out = []
    for call in message.get("tool_calls") or ():
        fn = (call or {}).get("function") or {}
        if fn.get("name"):
            out.append(ToolCall(id=str(call.get("id") or ""), name=str(fn["name"]),
                                arguments=str(fn.get("arguments") or "{}")))
    return tuple(out)


def stopped_generation(choices: dict[int, dict[str, Any]], streamed: bool,
                       seconds: float) -> Generation:
    """What a stopped request had produced: per choice the server's count so far (llama.cpp's
    per-token timings) or the number of streamed chunks (one token each); nothing is known
    of a request that was not streamed."""
    if not streamed:
        return Generation(completions=(), seconds=seconds,
                          counted_by="stopped before its reply (not streamed): tokens unknown")
    completions = []
    prompt = cached = 0
    for i in sorted(choices):
        c = choices[i]
        timings = c.get("timings") or {}
        count = int(timings.get("predicted_n", c.get("chunks", 0)))
        if timings:
            cached = int(timings.get("cache_n") or 0)
            prompt = cached + int(timings.get("prompt_n") or 0)
        completions.append(Completion(text=c["message"]["content"] or c["text"],
                                      finish_reason=c.get("finish_reason") or "cancelled",
                                      generated_tokens=count))
    return Generation(completions=tuple(completions), prompt_tokens=prompt, cached_tokens=cached,
                      seconds=seconds, counted_by="streamed so far (stopped)")


def shape_of(params: Any, layers: int = 0, width: Any = 0, size: Any = None) -> ModelShape | None:
    """A model's shape from what is known of it; None when its parameter count is not."""
    try:
        p = float(params) if params else 0.0
    except (TypeError, ValueError):
        return None
    if p <= 0:
        return None
    try:
        d = int(width or 0)
        weight_bytes = float(size) if size else 2.0 * p
    except (TypeError, ValueError):
        d, weight_bytes = 0, 2.0 * p
    return ModelShape(params=p, n_layers=layers, d_model=d, n_heads=1, n_kv_heads=1,
                      weight_bytes=weight_bytes)
