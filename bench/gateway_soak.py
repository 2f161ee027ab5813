"""Soak the gateway with thousands of requests, each with a client spec no other request used.

A real ``testtime serve`` process over the scripted backend gets ``--requests`` chat requests
(``--clients`` at once), each naming its own strategy spec (numbers varied, nested verifiers
included) through the model name, ``SPEC@MODEL`` or ``testtime.strategy``, with its own prompt
and request id, so every per-request cache key is new. The server's RSS is read from /proc
after a warm-up (the start) and after the run (the end); the last line is end / start.
Target: <= 1.1 (memory stays flat however many distinct specs and ids arrive).

    python bench/gateway_soak.py --requests 4000 --clients 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def spec(i: int) -> str:
    """The i-th distinct client spec."""
    t = f"{(i % 9973) / 9973 * 1.5:.6f}"
    kinds = [
        f"self-consistency:n={1 + i % 4},temperature={t}",
        f"best-of-n:n={1 + i % 3},temperature={t},verifier=[judge:k={1 + i % 5},mode=sample,"
        f"temperature={t}]",
        f"best-of-n:n=2,verifier=[confidence:mode=tail,window={1 + i}]",
        f"weighted-vote:n={1 + i % 4},max_tokens={8 + i % 1000}",
        f"early-stop:max_n={2 + i % 6},batch=2,threshold={0.501 + (i % 997) / 2000:.6f}",
        f"first-finish:n={1 + i % 3},temperature={t}",
    ]
    return kinds[i % len(kinds)]


def body(i: int) -> dict[str, object]:
    """Request i: its spec through one of the three ways a client can name one."""
    ask = [{"role": "user", "content": f"Question {i}: what is {i} + 1?"}]
    way = i % 3
    if way == 0:
        return {"model": spec(i), "messages": ask}
    if way == 1:
        return {"model": f"{spec(i)}@scripted", "messages": ask, "seed": i}
    return {"model": "scripted", "messages": ask, "testtime": {"strategy": spec(i)}}


async def drive(url: str, start: int, count: int, clients: int) -> dict[int, int]:
    """Send requests ``start .. start+count-1`` with ``clients`` in flight; status counts."""
    statuses: dict[int, int] = {}
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(start, start + count):
        queue.put_nowait(i)
    async with httpx.AsyncClient(base_url=url, timeout=120,
                                 headers={"Authorization": "Bearer sk-soak"}) as http:
        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                resp = await http.post("/v1/chat/completions", json=body(i),
                                       headers={"X-Request-ID": f"soak-{i}"})
                statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1

        await asyncio.gather(*(worker() for _ in range(clients)))
    return statuses


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--warmup", type=int, default=600)
    ap.add_argument("--clients", type=int, default=8)
    args = ap.parse_args()
    port = free_port()
    config = {"serve": {"backend": "scripted:text=The answer is 2.,record=false",
                        "model_name": "scripted",
                        "request_budget": "tokens=256", "max_concurrency": 8,
                        "max_queue": 256, "log_level": "WARNING",
                        "api_keys": {"sk-soak": {"name": "soak", "rpm": 10**9}}}}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "soak.json"
        path.write_text(json.dumps(config))
        proc = subprocess.Popen([sys.executable, "-m", "testtime.cli", "serve", "--config",
                                 str(path), "--port", str(port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(url + "/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("gateway did not start")
                time.sleep(0.1)
            boot = rss_kib(proc.pid)
            began = time.monotonic()
            warm = asyncio.run(drive(url, 0, args.warmup, args.clients))
            start = rss_kib(proc.pid)
            run = asyncio.run(drive(url, args.warmup, args.requests, args.clients))
            end = rss_kib(proc.pid)
            seconds = time.monotonic() - began
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} "
          f"{os.getloadavg()[2]:.2f} (1/5/15 min) on {os.cpu_count()} CPUs")
    print(f"warm-up: {args.warmup} requests, statuses {warm}")
    print(f"run: {args.requests} requests with distinct client specs, statuses {run}, "
          f"{(args.warmup + args.requests) / seconds:.0f} req/s")
    print(f"server RSS: boot {boot / 1024:.1f} MiB, start (after warm-up) "
          f"{start / 1024:.1f} MiB, end {end / 1024:.1f} MiB")
    print(f"RSS growth ratio end/start: {end / start:.3f}")


if __name__ == "__main__":
    main()
