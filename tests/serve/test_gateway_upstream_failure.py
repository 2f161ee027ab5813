"""An upstream that dies or hangs mid-load: 502/504 for those requests, the gateway lives on."""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

BODY = {"model": "scripted", "messages": [{"role": "user", "content": "What is 6*7?"}]}


def test_upstream_killed_and_hung_then_back(serve: Any, upstream: Any) -> None:
    start_upstream, free_port = upstream
    port = free_port()
    spec = "scripted:The answer is 42.,delay=0.05"  # 4 words → 0.2 s per upstream call
    target = f"openai:http://127.0.0.1:{port}/v1,model=scripted,retries=0,timeout=30"
    with start_upstream(spec, port) as proc, \
            serve(None, backend=target, request_timeout=2.0, max_concurrency=8) as gw:
        assert gw.post("/v1/chat/completions", BODY).json()["choices"][0]["message"][
            "content"] == "The answer is 42."

        outcomes: list[tuple[float, int]] = []
        stop = threading.Event()

        def client() -> None:
            while not stop.is_set():
                sent = time.monotonic()
                outcomes.append((sent, gw.post("/v1/chat/completions", BODY).status_code))

        with ThreadPoolExecutor(4) as pool:
            for _ in range(4):
                pool.submit(client)
            deadline = time.monotonic() + 30
            while sum(s == 200 for _, s in outcomes) < 4 and time.monotonic() < deadline:
                time.sleep(0.05)
            proc.kill()
            proc.wait(timeout=10)
            killed = time.monotonic()
            while sum(t > killed for t, _ in outcomes) < 4 and time.monotonic() < deadline:
                time.sleep(0.05)
            health = httpx.get(gw.url + "/health", timeout=5)
            stop.set()
        assert health.status_code == 200
        before = [s for t, s in outcomes if t <= killed]
        after = [s for t, s in outcomes if t > killed]
        assert before.count(200) >= 4 and set(before) <= {200, 502}, outcomes
        assert len(after) >= 4 and set(after) == {502}, outcomes
        err = gw.post("/v1/chat/completions", BODY).json()["error"]
        assert err["code"] == "upstream_error" and err["type"] == "upstream_error"

    with start_upstream(spec, port) as proc, serve(None, backend=target,
                                                   request_timeout=1.5) as gw:
        assert gw.post("/v1/chat/completions", BODY).status_code == 200
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            hung = gw.post("/v1/chat/completions", BODY)
            assert hung.status_code == 504 and hung.json()["error"]["code"] == "timeout"
            assert time.monotonic() - started < 5
            assert httpx.get(gw.url + "/health", timeout=5).status_code == 200
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        assert gw.post("/v1/chat/completions", BODY).status_code == 200
        metrics = httpx.get(gw.url + "/metrics", timeout=5).text
        assert 'testtime_gateway_upstream_errors_total{kind="timeout"} 1' in metrics
