"""Raw engine throughput vs. what self-consistency gets out of the same engine.

1. Raw, lockstep: direct calls to the embedded llama.cpp engine for a fixed prompt, every
   sequence generating exactly ``--max-tokens`` tokens (``ignore_eos``), at n=1, 8 and 16 in one
   request, and with as many sequences in flight as the strategy keeps (requests of n=8, all
   starting and ending together: the engine's best case).
2. Raw, same work: the strategy's own prompts sampled directly, one sample per engine call,
   each thread starting its next sample the moment its last one ends, so every slot is always
   busy with samples of natural, uneven length. Tokens are counted as they stream within a
   fixed window: the engine's steady throughput on this work, with no orchestration at all.
3. Strategy: ``self-consistency:n=8`` over ``--problems`` arith problems through testtime's
   runner (n samples per engine call where slots allow), with enough problems in flight to
   keep every slot busy; its time includes the tail where the last samples finish.

The last two lines are the strategy's generated tokens/s over the lockstep figure and over
the same-work figure (target: >= 0.9 for the last, which is what orchestration controls;
lockstep is the engine's own ceiling on fixed-length work). All phases run side by side in
one process, so the ratios hold even on a shared, noisy machine; the absolute figures do not.

    python bench/throughput.py --model qwen2.5-coder-0.5b --problems 32 --max-tokens 128
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from testtime.backends.embedded import EmbeddedBackend, chat_request
from testtime.eval.runner import run_problems
from testtime.models import DEFAULT_MODEL
from testtime.strategies import make_strategy
from testtime.tasks import make_task
from testtime.types import GenerationRequest, Problem

PROMPT = "Write a long story about a lighthouse keeper and the sea."


def raw_request(backend: EmbeddedBackend, n: int, max_tokens: int, seed: int) -> int:
    """One direct engine call of ``n`` fixed-length sequences; returns tokens generated."""
    body: dict[str, Any] = {
        "messages": [{"role": "user", "content": PROMPT}], "n": n, "max_tokens": max_tokens,
        "temperature": 0.8, "seed": seed, "ignore_eos": True, "stream": True,
    }
    predicted: dict[int, int] = {}
    errors: list[Any] = []

    def on_chunk(chunk: Any) -> bool:
        if not isinstance(chunk, dict) or "error" in chunk:
            errors.append(chunk)
            return True
        for c in chunk.get("choices", ()):
            if c.get("finish_reason"):
                predicted[int(c.get("index", 0))] = int(
                    (chunk.get("timings") or {}).get("predicted_n", 0))
        return False

    reply = backend._engine.server.handle_chat_completions(body, on_chunk)
    if errors or (isinstance(reply, dict) and "error" in reply):
        raise RuntimeError(f"engine error: {errors[:1] or reply}")
    return sum(predicted.values())


def raw_throughput(backend: EmbeddedBackend, n: int, requests: int, max_tokens: int
                   ) -> tuple[float, int, float]:
    """Generated tokens/s with ``requests`` concurrent calls of ``n`` sequences each."""
    with ThreadPoolExecutor(max_workers=requests) as pool:
        started = time.monotonic()
        futures = [pool.submit(raw_request, backend, n, max_tokens, 1000 + i)
                   for i in range(requests)]
        tokens = sum(f.result() for f in futures)
        seconds = time.monotonic() - started
    expected = n * requests * max_tokens
    if tokens != expected:
        print(f"  note: {tokens} tokens generated, {expected} expected", file=sys.stderr)
    return tokens / seconds, tokens, seconds


def natural_throughput(backend: EmbeddedBackend, problems: list[Problem], inflight: int,
                       max_tokens: int, seconds: float) -> tuple[float, int, float]:
    """Streamed tokens/s of ``inflight`` threads sampling the problems one call per sample."""
    work = itertools.count()
    deadline = time.monotonic() + seconds
    counts = [0] * inflight
    errors: list[Any] = []

    def loop(worker: int) -> None:
        while time.monotonic() < deadline and not errors:
            i = next(work)
            problem = problems[i % len(problems)]
            req = GenerationRequest(prompt=problem.prompt(), max_tokens=max_tokens,
                                    temperature=0.8, seed=i)
            body = {**chat_request(req.prompt, req, 1), "stream": True}

            def on_chunk(chunk: Any) -> bool:
                if not isinstance(chunk, dict) or "error" in chunk:
                    errors.append(chunk)
                    return True
                for c in chunk.get("choices", ()):
                    if (c.get("delta") or {}).get("content") and time.monotonic() < deadline:
                        counts[worker] += 1
                return time.monotonic() >= deadline

            reply = backend._engine.server.handle_chat_completions(body, on_chunk)
            if isinstance(reply, dict) and "error" in reply:
                errors.append(reply)

    started = time.monotonic()
    threads = [threading.Thread(target=loop, args=(w,)) for w in range(inflight)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"engine error: {errors[0]}")
    elapsed = min(time.monotonic(), deadline) - started
    return sum(counts) / elapsed, sum(counts), elapsed


async def strategy_throughput(backend: EmbeddedBackend, problems: int, n: int,
                              concurrency: int, max_tokens: int) -> tuple[float, int, float]:
    """Generated tokens/s of self-consistency over arith problems through the runner."""
    task = make_task("arith")
    strategy = make_strategy(f"self-consistency:n={n},max_tokens={max_tokens}")
    records, seconds = await run_problems(
        task.problems(limit=problems, seed=0), strategy, backend,
        spec=f"self-consistency:n={n}", seed=0, concurrency=concurrency)
    failed = [r for r in records if r.get("error")]
    if failed:
        raise RuntimeError(f"{len(failed)} problems failed; first: {failed[0]['error']}")
    tokens = sum(int(r["usage"]["generated_tokens"]) for r in records)
    return tokens / seconds, tokens, seconds


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print each figure; the ratio comes last."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=DEFAULT_MODEL, help="pack name or .gguf path")
    ap.add_argument("--problems", type=int, default=32, help="arith problems for the strategy")
    ap.add_argument("--max-tokens", type=int, default=128,
                    help="fixed length of each raw sequence")
    ap.add_argument("--strategy-max-tokens", type=int, default=512,
                    help="max_tokens of each self-consistency sample")
    ap.add_argument("--slots", type=int, default=32, help="engine slots (sequences in flight)")
    ap.add_argument("--n", type=int, default=8, help="samples per problem")
    ap.add_argument("--concurrency", type=int, default=0,
                    help="problems in flight (default: 2 x slots / n, so the queue never "
                         "runs dry while a problem's last samples finish)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--window", type=float, default=180.0,
                    help="seconds of the same-work raw phase")
    args = ap.parse_args(argv)
    if min(args.problems, args.max_tokens, args.slots, args.n, args.threads) < 1 or (
            args.n > args.slots):
        ap.error("--problems, --max-tokens, --slots, --n, --threads must be >= 1, n <= slots")
    concurrency = args.concurrency or max(1, 2 * args.slots // args.n)
    inflight = min(args.slots, args.n * concurrency)

    backend = EmbeddedBackend(model=args.model, slots=args.slots, threads=args.threads,
                              ctx=max(1024, args.strategy_max_tokens + 512))
    try:
        backend.start()
    except Exception as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"model {args.model}, slots {args.slots}, threads {args.threads}, "
          f"raw sequences of {args.max_tokens} tokens")
    raw_request(backend, 1, 8, 0)  # warm-up: load weights into cache
    for n in (1, 8, 16):
        n = min(n, args.slots)
        tps, tokens, seconds = raw_throughput(backend, n, 1, args.max_tokens)
        print(f"raw n={n:<3d} {tps:8.1f} tok/s  ({tokens} tokens in {seconds:.1f} s)")
    requests = max(1, inflight // args.n)
    raw_tps, tokens, seconds = raw_throughput(backend, args.n, requests, args.max_tokens)
    print(f"raw {requests}x n={args.n} ({requests * args.n} in flight) {raw_tps:8.1f} tok/s  "
          f"({tokens} tokens in {seconds:.1f} s)")
    nat_tps, tokens, seconds = natural_throughput(
        backend, make_task("arith").problems(limit=args.problems, seed=1), inflight,
        args.strategy_max_tokens, args.window)
    print(f"raw same work, {inflight} in flight, one sample per call {nat_tps:8.1f} tok/s  "
          f"({tokens} tokens streamed in {seconds:.1f} s)")
    sc_tps, tokens, seconds = asyncio.run(strategy_throughput(
        backend, args.problems, args.n, concurrency, args.strategy_max_tokens))
    print(f"self-consistency:n={args.n} over {args.problems} arith problems, concurrency "
          f"{concurrency}: {sc_tps:8.1f} tok/s  ({tokens} tokens in {seconds:.1f} s)")
    backend._pool.shutdown(wait=True)
    print(f"ratio strategy/raw lockstep at {requests * args.n} in flight: "
          f"{sc_tps / raw_tps:.3f}")
    print(f"ratio strategy/raw same work at {inflight} in flight: {sc_tps / nat_tps:.3f}")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
