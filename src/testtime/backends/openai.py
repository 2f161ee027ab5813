"""Any OpenAI-compatible server: vLLM, SGLang, llama.cpp's server, hosted APIs.

Uses ``n`` where the server honours it and falls back to concurrent requests where it does not
(detected from the first reply). Servers disagree on ``usage`` when ``n > 1`` (llama.cpp counts
one choice, vLLM and OpenAI count all), so with ``n > 1`` token logprobs are requested and each
choice is counted from them; ``Generation.counted_by`` records which source was used.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from typing import Any, Literal

import httpx
from pydantic import Field

from testtime.backends.base import (
    BackendError,
    BackendSettings,
    Capabilities,
    backends,
    join_completions,
)
from testtime.backends.embedded import chat_request
from testtime.budget import CostModel
from testtime.types import Completion, Generation, GenerationRequest

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

    positional = "url"


@backends.register("openai")
class OpenAIBackend:
    """Client of an OpenAI-compatible HTTP server, with retries, backoff and honest counting."""

    Settings = OpenAISettings

    def __init__(self, settings: OpenAISettings | None = None, **kwargs: Any) -> None:
        self.settings = settings or OpenAISettings(**kwargs)
        s = self.settings
        self.name = f"openai:{s.url}"
        self.capabilities = Capabilities(max_n=s.max_n if s.n_mode != "concurrent" else 1,
                                         logprobs=True, prefix_cache=True,
                                         max_parallel=s.concurrency, streaming=False)
        self.cost = CostModel()
        key = s.api_key or os.environ.get("TESTTIME_API_KEY") or os.environ.get(
            "OPENAI_API_KEY") or "none"
        self._client = httpx.AsyncClient(
            base_url=s.url.rstrip("/"), timeout=httpx.Timeout(s.timeout, connect=10.0),
            headers={"Authorization": f"Bearer {key}"},
            limits=httpx.Limits(max_connections=s.concurrency))
        self._limit = asyncio.Semaphore(s.concurrency)
        self._native_n: bool | None = {"auto": None, "native": True,
                                       "concurrent": False}[s.n_mode]
        self._model: str | None = s.model

    async def model_name(self) -> str:
        """The served model: from settings, else the first one the server lists."""
        if self._model is None:
            data = await self._request("GET", "/models")
            models = data.get("data") or []
            if not models:
                raise BackendError(f"{self.settings.url} lists no models; pass model=NAME")
            self._model = str(models[0]["id"])
        return self._model

    async def ready(self) -> None:
        """Reach the server and learn the model name."""
        await self.model_name()

    async def generate(self, req: GenerationRequest) -> Generation:
        """Sample ``req.n`` completions with native ``n`` or concurrent single requests."""
        if req.n == 1 or self._native_n is False:
            return await self._concurrent(req)
        n_max = self.capabilities.max_n
        sizes = [min(n_max, req.n - i) for i in range(0, req.n, n_max)]
        parts = list(await asyncio.gather(*(self._one(req, k) for k in sizes)))
        got = sum(len(p.completions) for p in parts)
        if got < req.n:
            if self._native_n is None:
                self._native_n = False
            rest = req.model_copy(update={"n": req.n - got})
            parts.append(await self._concurrent(rest))
        elif self._native_n is None:
            self._native_n = True
        return parts[0] if len(parts) == 1 else join_completions(parts, parts[0].counted_by)

    async def _concurrent(self, req: GenerationRequest) -> Generation:
        seeds = [None if req.seed is None else req.seed + i for i in range(req.n)]
        parts = await asyncio.gather(
            *(self._one(req.model_copy(update={"seed": s}), 1) for s in seeds))
        return parts[0] if len(parts) == 1 else join_completions(list(parts), parts[0].counted_by)

    def _body(self, req: GenerationRequest, n: int, model: str) -> tuple[str, dict[str, Any]]:
        want_logprobs = req.logprobs or n > 1
        if self.settings.mode == "chat":
            body = chat_request(req.prompt, req.model_copy(update={"logprobs": want_logprobs}), n)
            if req.prompt.prefix and self.settings.continue_flags:
                body.update(continue_final_message=True, add_generation_prompt=False)
            path = "/chat/completions"
        else:
            text = "\n\n".join(m.content for m in req.prompt.messages)
            text += "\n\n" + req.prompt.prefix if req.prompt.prefix else "\n\n"
            body = {"prompt": text, "n": n, "max_tokens": req.max_tokens,
                    "temperature": req.temperature, "top_p": req.top_p}
            if req.stop:
                body["stop"] = list(req.stop)
            if req.seed is not None:
                body["seed"] = req.seed
            if want_logprobs:
                body["logprobs"] = 1
            path = "/completions"
        body["model"] = model
        return path, body

    async def _one(self, req: GenerationRequest, n: int) -> Generation:
        model = await self.model_name()
        path, body = self._body(req, n, model)
        started = time.monotonic()
        async with self._limit:
            data = await self._request("POST", path, body)
        return self._parse(data, req, n, time.monotonic() - started)

    def _parse(self, data: dict[str, Any], req: GenerationRequest, n: int,
               seconds: float) -> Generation:
        choices = sorted(data.get("choices") or [], key=lambda c: c.get("index", 0))
        if not choices:
            raise BackendError(f"server reply has no choices: {str(data)[:300]}")
        usage = data.get("usage") or {}
        completions = []
        per_choice = True
        for c in choices:
            if self.settings.mode == "chat":
                text = (c.get("message") or {}).get("content") or ""
                lps = [t["logprob"] for t in ((c.get("logprobs") or {}).get("content") or [])]
            else:
                text = c.get("text") or ""
                lps = list((c.get("logprobs") or {}).get("token_logprobs") or [])
            if req.prompt.prefix and text.startswith(req.prompt.prefix):
                text = text[len(req.prompt.prefix):]
            per_choice &= bool(lps) or not text
            completions.append(Completion(
                text=text, finish_reason=c.get("finish_reason") or "stop",
                generated_tokens=len(lps),
                logprobs=tuple(float(x) for x in lps) if req.logprobs else None))
        reported = int(usage.get("completion_tokens") or 0)
        if len(completions) == 1 and reported:
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
        return Generation(
            completions=tuple(completions),
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            cached_tokens=int(details.get("cached_tokens") or 0),
            seconds=seconds, counted_by=counted_by)

    async def _request(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        s = self.settings
        last: str = ""
        for attempt in range(s.retries + 1):
            try:
                resp = await self._client.request(method, path, json=body)
            except (httpx.TransportError, httpx.TimeoutException) as exc:
                last = f"{type(exc).__name__}: {exc}" or type(exc).__name__
            else:
                if resp.status_code < 400:
                    try:
                        return resp.json()  # type: ignore[no-any-return]
                    except ValueError:
                        raise BackendError(
                            f"{s.url}{path} answered non-JSON: {resp.text[:200]}") from None
                last = f"HTTP {resp.status_code}: {resp.text[:300]}"
                if resp.status_code not in RETRYABLE:
                    raise BackendError(f"{s.url}{path} failed: {last}")
            if attempt < s.retries:
                await asyncio.sleep(s.backoff * 2**attempt * (1 + random.random() / 2))
        raise BackendError(f"{s.url}{path} unreachable after {s.retries + 1} tries: {last}")

    async def close(self) -> None:
        """Close the HTTP connections."""
        await self._client.aclose()
