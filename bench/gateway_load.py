"""Load the gateway with N concurrent clients and compare with calling the backend directly.

Both phases run the same strategy on the same prompts with the same number of concurrent
clients for the same time, in one process and one event loop (one model in memory). Prints
requests/s, p50/p99 latency and errors per phase; the last line is the gateway's overhead as a
fraction of end-to-end time, measured per request: the client's latency minus the strategy's
own wall time (the same work as a direct call; the gateway reports it in
usage.testtime.seconds), over the client's latency. The phase comparison (mean gateway latency
against mean direct latency) is printed too, but it is only meaningful on a quiet machine.

    python bench/gateway_load.py --backend embedded:smollm2-135m --clients 4 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import socket
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx
import uvicorn

from testtime.backends.base import make_backend
from testtime.eval.runner import solve
from testtime.serve.app import create_app
from testtime.serve.config import ServeConfig
from testtime.strategies import make_strategy
from testtime.types import Problem

QUESTIONS = [f"What is {a} + {b}? Reply with the number only." for a, b in
             [(3, 4), (12, 30), (7, 8), (21, 21), (5, 9), (40, 2), (13, 13), (6, 7)]]


@dataclass
class Phase:
    """Latencies and failures of one load phase."""

    name: str
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    inner: list[float] = field(default_factory=list)
    errors: int = 0

    def pct(self, q: float) -> float:
        xs = sorted(self.latencies)
        return xs[min(int(q * len(xs)), len(xs) - 1)] if xs else float("nan")

    def line(self) -> str:
        n = len(self.latencies)
        return (f"{self.name:8s} requests={n} errors={self.errors} "
                f"req/s={n / self.seconds:.2f} p50={self.pct(0.5) * 1000:.0f}ms "
                f"p99={self.pct(0.99) * 1000:.0f}ms mean={self.mean() * 1000:.0f}ms")

    def mean(self) -> float:
        return statistics.fmean(self.latencies) if self.latencies else float("nan")


async def load(phase: Phase, clients: int, seconds: float,
               call: Callable[[str], Awaitable[float | None]]) -> Phase:
    """Run ``clients`` loops of ``call`` for ``seconds``; record latency or an error each."""
    prompts = itertools.cycle(QUESTIONS)
    stop = time.monotonic() + seconds

    async def client() -> None:
        while time.monotonic() < stop:
            started = time.monotonic()
            try:
                inner = await call(next(prompts))
            except Exception:
                phase.errors += 1
                continue
            phase.latencies.append(time.monotonic() - started)
            if inner is not None:
                phase.inner.append(inner)

    began = time.monotonic()
    await asyncio.gather(*(client() for _ in range(clients)))
    phase.seconds = time.monotonic() - began
    return phase


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def main(args: argparse.Namespace) -> None:
    backend = make_backend(args.backend)
    await backend.ready()
    spec = f"{args.strategy},max_tokens={args.max_tokens}" if ":" in args.strategy else \
        f"{args.strategy}:max_tokens={args.max_tokens}"
    strategy = make_strategy(spec)

    async def direct(question: str) -> float | None:
        await solve(Problem(id=question, question=question, kind="text"), strategy, backend,
                    spec=spec)
        return None

    port = free_port()
    config = ServeConfig(port=port, default_strategy=spec, max_concurrency=args.clients,
                         log_level="WARNING")
    server = uvicorn.Server(uvicorn.Config(create_app(config, backend), host="127.0.0.1",
                                           port=port, log_level="warning", access_log=False))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    model = (await httpx.AsyncClient().get(f"http://127.0.0.1:{port}/v1/models")).json()[
        "data"][0]["id"]
    http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=600,
                             limits=httpx.Limits(max_connections=args.clients))

    async def gateway(question: str) -> float | None:
        resp = await http.post("/v1/chat/completions", json={
            "model": model, "messages": [{"role": "user", "content": question}]})
        resp.raise_for_status()
        return float(resp.json()["usage"]["testtime"]["seconds"])

    for warm in (direct, gateway):
        await warm(QUESTIONS[0])
    print(f"backend={args.backend} strategy={spec} clients={args.clients} "
          f"seconds={args.seconds}")
    phases = []
    for _ in range(args.rounds):
        phases.append(await load(Phase("direct"), args.clients, args.seconds, direct))
        phases.append(await load(Phase("gateway"), args.clients, args.seconds, gateway))
    await http.aclose()
    server.should_exit = True
    await serving
    await backend.close()
    merged = {name: Phase(name) for name in ("direct", "gateway")}
    for p in phases:
        m = merged[p.name]
        m.seconds += p.seconds
        m.latencies += p.latencies
        m.inner += p.inner
        m.errors += p.errors
    for p in merged.values():
        print(p.line())
    gw, dr = merged["gateway"], merged["direct"]
    outside = [lat - inner for lat, inner in zip(gw.latencies, gw.inner, strict=False)]
    print(f"phase comparison: (gateway mean - direct mean) / gateway mean = "
          f"{(gw.mean() - dr.mean()) / gw.mean():.4f} (noisy when the machine is shared)")
    if not outside:
        print("overhead_ratio=nan (no successful gateway request)")
        return
    ratio = statistics.fmean(outside) / gw.mean()
    mid = sorted(outside)[len(outside) // 2]
    print(f"gateway time outside the strategy per request: mean="
          f"{statistics.fmean(outside) * 1000:.1f}ms, p50={mid * 1000:.1f}ms")
    print(f"overhead_ratio={ratio:.4f} (end-to-end latency minus the strategy's own time, "
          "i.e. the direct backend work, over end-to-end latency; target <= 0.05)")

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="embedded:smollm2-135m")
    parser.add_argument("--strategy", default="single")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=2,
                        help="alternate direct/gateway phases this many times")
    asyncio.run(main(parser.parse_args()))
