"""Requests/s through 1 and then 2 engine replicas behind the gateway on Ray Serve.

The upstream is a stub OpenAI-compatible server on 127.0.0.1 (a subprocess) that answers
every chat completion after a fixed delay, so the figure measures orchestration, not
arithmetic. Each engine replica is one ``openai:`` client allowed ``--slots`` calls at once
(``concurrency=`` of the backend and ``max_ongoing_requests`` of the replica), so one replica
serves at most ``slots / delay`` requests/s. Two gateway replicas take the HTTP requests; the
clock starts after deployment and a warm-up. The single-process gateway (``testtime serve``,
same backend spec, same stub) is measured too. The last line is the ratio of 2 to 1 replicas
(target >= 1.7), with the single-process rate beside it.

    python bench/serve_scaling.py --requests 120 --delay 0.5 --slots 4
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

ANSWER = {"role": "assistant", "content": "The answer is 4."}


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_stub(port: int, delay: float) -> None:
    """Serve the stub upstream on 127.0.0.1:``port`` until killed."""

    class Stub(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            return

        def _send(self, body: dict[str, object]) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._send({"object": "list", "data": [{"id": "stub", "object": "model"}]})

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            time.sleep(delay)
            self._send({"id": "stub", "object": "chat.completion", "model": "stub",
                        "choices": [{"index": 0, "message": ANSWER, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 12, "completion_tokens": 5,
                                  "total_tokens": 17}})

    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer(("127.0.0.1", port), Stub).serve_forever()


@contextmanager
def process(args: list[str], health: str) -> Iterator[None]:
    """A subprocess running meanwhile, once ``health`` answers 200."""
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "TESTTIME_API_KEYS": ""})
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{args[:4]} did not start")
            try:
                if httpx.get(health, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=20)


async def rate(url: str, requests: int, concurrency: int) -> float:
    """Requests/s of ``requests`` chat completions sent ``concurrency`` at a time."""
    body = {"model": "single", "messages": [{"role": "user", "content": "2+2?"}]}
    queue = list(range(requests))

    async def worker(client: httpx.AsyncClient) -> None:
        while queue:
            queue.pop()
            r = await client.post(url + "/v1/chat/completions", json=body)
            if r.status_code != 200:
                raise RuntimeError(f"{r.status_code}: {r.text[:200]}")

    async with httpx.AsyncClient(timeout=120) as client:
        for _ in range(concurrency):
            await client.post(url + "/v1/chat/completions", json=body)
        started = time.monotonic()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return requests / (time.monotonic() - started)


def main() -> int:
    """Measure 1 and 2 engine replicas on Ray and the single-process gateway; print rates."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=120)
    ap.add_argument("--delay", type=float, default=0.5, help="stub seconds per request")
    ap.add_argument("--slots", type=int, default=4, help="calls one engine replica serves")
    ap.add_argument("--stub", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.stub is not None:
        run_stub(args.stub, args.delay)
        return 0
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    from testtime.distributed.cluster import ray_session
    from testtime.distributed.serve_ray import deploy
    from testtime.serve.config import ServeConfig

    stub = free_port()
    backend = f"openai:http://127.0.0.1:{stub}/v1,concurrency={args.slots},retries=0"
    concurrency = 4 * args.slots
    rates: dict[str, float] = {}
    with process([sys.executable, __file__, "--stub", str(stub), "--delay", str(args.delay)],
                 f"http://127.0.0.1:{stub}/v1/models"):
        port = free_port()
        with process([sys.executable, "-m", "testtime.cli", "serve", "--backend", backend,
                      "--port", str(port)], f"http://127.0.0.1:{port}/health"):
            rates["single-process"] = asyncio.run(rate(f"http://127.0.0.1:{port}",
                                                       args.requests, concurrency))
        print(f"single-process gateway: {rates['single-process']:.2f} req/s", flush=True)
        with ray_session(None, num_cpus=2):
            for engines in (1, 2):
                config = ServeConfig(
                    port=free_port(), backend=backend, max_concurrency=concurrency,
                    ray={"gateway": {"num_replicas": 2, "num_cpus": 0},
                         "engine": {"num_replicas": engines, "num_cpus": 0,
                                    "max_ongoing_requests": args.slots}})
                with deploy(config) as app:
                    rates[str(engines)] = asyncio.run(rate(app.url, args.requests,
                                                           concurrency))
                print(f"ray: 2 gateway, {engines} engine replica(s): {rates[str(engines)]:.2f} "
                      f"req/s (ceiling {engines * args.slots / args.delay:.1f})", flush=True)
    ratio = rates["2"] / rates["1"]
    missed = "" if ratio >= 1.7 else ", missed"
    print(f"ratio 2/1 engine replicas: {ratio:.2f} (target >= 1.7{missed}); "
          f"single-process gateway on the same stub: {rates['single-process']:.2f} req/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
