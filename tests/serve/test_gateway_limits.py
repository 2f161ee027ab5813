"""Per-key limits (rpm, tpm, concurrency) and the server's concurrency limiter under bursts."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from testtime.backends.scripted import ScriptedBackend
from testtime.serve.config import KeyConfig
from testtime.serve.errors import ApiError
from testtime.serve.protection import KeyGuard, Limiter
from testtime.types import Generation, GenerationRequest

ASK = [{"role": "user", "content": "What is 1+1?"}]


def chat(key: str, http: httpx.Client, **extra: Any) -> httpx.Response:
    return http.post("/v1/chat/completions", json={"model": "scripted", "messages": ASK, **extra},
                     headers={"Authorization": f"Bearer {key}"})


class Gated(ScriptedBackend):
    """A scripted engine whose calls for prompts containing 'hold' wait for ``gate``."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    async def generate(self, req: GenerationRequest) -> Generation:
        if "hold" in req.prompt.messages[-1].content:
            while not self.gate.is_set():
                await asyncio.sleep(0.01)
        return await super().generate(req)


def metric(http: httpx.Client, key: str, reason: str) -> float:
    line = f'testtime_gateway_key_refusals_total{{key="{key}",reason="{reason}"}} '
    for row in http.get("/metrics").text.splitlines():
        if row.startswith(line):
            return float(row[len(line):])
    return 0.0


def test_two_keys_at_once_one_throttled_the_other_not(serve: Any) -> None:
    backend = Gated()
    keys = {"sk-a": {"name": "team-a", "concurrency": 1, "rpm": 3},
            "sk-b": {"name": "team-b"}}
    with serve(backend, api_keys=keys, max_concurrency=8) as gw, \
            httpx.Client(base_url=gw.url, timeout=60) as http, ThreadPoolExecutor(8) as pool:
        held = pool.submit(chat, "sk-a", http,
                           messages=[{"role": "user", "content": "hold on"}])
        deadline = time.monotonic() + 30
        while http.get("/health").json()["running"] < 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        a_busy = list(pool.map(lambda _: chat("sk-a", http), range(2)))
        b_free = list(pool.map(lambda _: chat("sk-b", http), range(4)))
        for resp in a_busy:
            assert resp.status_code == 429, resp.text
            assert resp.json()["error"]["code"] == "rate_limit_exceeded"
            assert resp.headers["retry-after"] == "1"
        assert [r.status_code for r in b_free] == [200] * 4
        backend.gate.set()
        assert held.result().status_code == 200
        for _ in range(2):                             # refusals do not count towards rpm
            assert chat("sk-a", http).status_code == 200
        over = chat("sk-a", http)                      # 4th admitted request: over rpm=3
        assert over.status_code == 429 and "3 requests per minute" in over.json()["error"][
            "message"]
        assert 1 <= int(over.headers["retry-after"]) <= 60
        assert chat("sk-b", http).status_code == 200
        assert metric(http, "team-a", "concurrency") == 2
        assert metric(http, "team-a", "rpm") == 1
        assert metric(http, "team-b", "rpm") == metric(http, "team-b", "concurrency") == 0


def test_tokens_per_minute_throttle_and_cap_requests(serve: Any) -> None:
    keys = {"sk-t": {"name": "tpm-key", "tpm": 40}, "sk-u": {"name": "free"}}
    with serve(ScriptedBackend(), api_keys=keys) as gw, \
            httpx.Client(base_url=gw.url, timeout=60) as http:
        spent = 0
        while True:
            resp = chat("sk-t", http)
            if resp.status_code == 429:
                break
            assert resp.status_code == 200, resp.text
            spent += resp.json()["usage"]["total_tokens"]
            assert spent < 200
        assert 0 < spent <= 40, "throttled before the key spent past its tpm"
        assert resp.json()["error"]["code"] == "rate_limit_exceeded"
        assert "tokens per minute" in resp.json()["error"]["message"]
        assert 1 <= int(resp.headers["retry-after"]) <= 60
        assert chat("sk-u", http).status_code == 200
        assert metric(http, "tpm-key", "tpm") == 1


def test_key_limits_follow_a_clock() -> None:
    now = [0.0]
    guard = KeyGuard({"k": KeyConfig(name="k", rpm=2, tpm=100)}, clock=lambda: now[0])
    who = guard.authenticate("Bearer k")
    for _ in range(2):
        guard.admit(who).release()
    with pytest.raises(ApiError) as refused:
        guard.admit(who)
    assert refused.value.status == 429 and refused.value.headers["Retry-After"] == "60"
    now[0] = 59.5
    with pytest.raises(ApiError):
        guard.admit(who)
    now[0] = 60.5
    guard.admit(who).release()
    guard.charge(who, 150)
    assert guard.remaining("k") == 0
    with pytest.raises(ApiError, match="tokens per minute") as over:
        guard.admit(who)
    assert over.value.headers["Retry-After"] == "60"
    now[0] = 121.0
    assert guard.remaining("k") == 100
    guard.admit(who).release()


async def test_limiter_never_refuses_with_free_capacity() -> None:
    limiter = Limiter(limit=2, queue=1, wait=5)
    first, second = await limiter.acquire(), await limiter.acquire()
    queued = asyncio.ensure_future(limiter.acquire())
    while limiter.waiting == 0 or not limiter._sem._waiters:
        await asyncio.sleep(0)
    with pytest.raises(ApiError, match="2 running, 1 queued"):
        await limiter.acquire()
    first.release()
    second.release()
    # One slot went to the queued request (not resumed yet); the other is free right now.
    third = await limiter.acquire()
    (await queued).release()
    third.release()
    assert limiter.running == limiter.waiting == 0 and limiter.refused == 1


def test_burst_within_capacity_gets_no_429(serve: Any) -> None:
    backend = ScriptedBackend(delay=0.002)
    with serve(backend, max_concurrency=8, max_queue=64, queue_timeout=60) as gw, \
            httpx.Client(base_url=gw.url, timeout=120,
                         limits=httpx.Limits(max_connections=64)) as http, \
            ThreadPoolExecutor(64) as pool:
        replies = list(pool.map(
            lambda i: http.post("/v1/chat/completions", json={
                "model": "scripted", "messages": [{"role": "user", "content": f"q{i}"}]}),
            range(200)))
        codes = [r.status_code for r in replies]
        assert codes.count(200) == 200, [r.text for r in replies if r.status_code != 200][:3]
        assert "testtime_gateway_requests_refused 0" in http.get("/metrics").text
