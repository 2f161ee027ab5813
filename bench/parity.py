"""Are testtime's samples as good as the engine's own? Raw requests to llama.cpp's own server
vs testtime's ``openai`` backend against that server vs testtime's ``embedded`` backend, in one
run, on the same arith problems with the same settings.

Each arm draws ``--samples`` samples per problem with fixed seeds (different per arm, so the
arms are independent draws from what should be one distribution). Raw requests are what a user
of the server would send: the problem's chat messages, ``n``, ``temperature``, ``max_tokens``
and a seed, nothing else. Per-problem single-sample accuracy (share of right samples) is
compared between every two arms with a paired sign-flip permutation test; the last line is the
p-value of the pair whose mean accuracies differ most (parity: well above 0.05).

``--also OPTS`` adds a fourth arm, testtime's embedded backend with extra strategy options
(``--also top_p=1.0`` reproduces what testtime used to send by default), compared with the
engine's arm on its own line above the last.

    python bench/parity.py --problems 40 --samples 8 --max-tokens 192
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sys
import time
from typing import Any

import httpx

from testtime.backends.embedded import EmbeddedBackend
from testtime.backends.llamacpp_server import LlamaCppServer
from testtime.backends.openai import OpenAIBackend
from testtime.eval.grading import grade
from testtime.eval.runner import run_problems
from testtime.eval.stats import paired_permutation_p
from testtime.strategies import make_strategy
from testtime.strategies.base import Context, derive_seed
from testtime.strategies.voting import vote
from testtime.tasks.arith import ArithTask
from testtime.types import Completion, Problem

Arm = dict[str, Any]  # name, per-problem accuracy list, majority list, tokens, seconds


def parse(argv: list[str]) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--problems", type=int, default=40)
    ap.add_argument("--level", default="2+3+4")
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--max-tokens", type=int, default=192)
    ap.add_argument("--slots", type=int, default=16)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--also", default=None, metavar="OPTS",
                    help="extra embedded arm with these strategy options, e.g. top_p=1.0")
    args = ap.parse_args(argv)
    if args.problems < 2 or args.samples < 1 or args.slots < args.samples:
        ap.error("need problems >= 2, samples >= 1 and slots >= samples")
    return args


def summarise(name: str, problems: list[Problem], texts: list[list[str]], tokens: int,
              seconds: float) -> Arm:
    """Grade every sample and the majority vote of each problem."""
    acc, major = [], []
    for problem, outs in zip(problems, texts, strict=True):
        cands = [Context.candidate(problem.prompt(), Completion(text=t)) for t in outs]
        acc.append(sum(bool(grade(problem, c.answer, c.text)) for c in cands) / len(cands))
        answer, _ = vote(cands)
        major.append(float(bool(grade(problem, answer, None))))
    arm: Arm = {"name": name, "acc": acc, "major": major, "tokens": tokens, "seconds": seconds}
    print(f"{name:34s} single-sample {sum(acc) / len(acc):.3f}  majority "
          f"{sum(major) / len(major):.3f}  {tokens} tokens in {seconds:.0f} s", flush=True)
    return arm


async def raw_arm(url: str, problems: list[Problem], args: argparse.Namespace) -> Arm:
    """Plain requests to the server, as a user of llama.cpp would send them."""
    gate = asyncio.Semaphore(max(1, args.slots // args.samples))
    texts: list[list[str]] = [[] for _ in problems]
    async with httpx.AsyncClient(base_url=url, timeout=3600) as client:
        async def one(i: int, problem: Problem) -> None:
            body = {"messages": [m.to_openai() for m in problem.prompt().messages],
                    "n": args.samples, "temperature": args.temperature,
                    "max_tokens": args.max_tokens, "seed": derive_seed(args.seed, problem.id)}
            async with gate:
                reply = (await client.post("/chat/completions", json=body)).json()
            choices = sorted(reply["choices"], key=lambda c: c["index"])
            texts[i] = [c["message"]["content"] for c in choices]

        before = await predicted(client)
        started = time.monotonic()
        await asyncio.gather(*(one(i, p) for i, p in enumerate(problems)))
        seconds = time.monotonic() - started
        tokens = await predicted(client) - before
    return summarise("engine's server, raw requests", problems, texts, tokens, seconds)


async def predicted(client: httpx.AsyncClient) -> int:
    """Tokens the server generated so far, from its own /metrics (its usage counts one choice
    of an ``n > 1`` request)."""
    root = str(client.base_url).rstrip("/").removesuffix("/v1")
    text = (await client.get(f"{root}/metrics")).text
    for line in text.splitlines():
        if line.startswith("llamacpp:tokens_predicted_total"):
            return int(float(line.split()[-1]))
    return 0


async def testtime_arm(name: str, backend: Any, problems: list[Problem],
                       args: argparse.Namespace, seed: int, options: str = "") -> Arm:
    """Self-consistency through testtime's runner; its candidates are the samples."""
    spec = (f"self-consistency:n={args.samples},temperature={args.temperature},"
            f"max_tokens={args.max_tokens}{',' + options if options else ''}")
    records, wall = await run_problems(problems, make_strategy(spec), backend, spec=spec,
                                       seed=seed, concurrency=len(problems))
    errors = [r["error"] for r in records if r.get("error")]
    if errors:
        raise SystemExit(f"{name}: {len(errors)} problems failed, first: {errors[0]}")
    texts = [[c["text"] for c in r["candidates"]] for r in records]
    tokens = sum(r["usage"]["generated_tokens"] for r in records)
    return summarise(name, problems, texts, tokens, wall)


async def main(args: argparse.Namespace) -> float:
    """Run every arm and return the p-value of the largest difference."""
    problems = ArithTask(level=args.level).problems(args.problems, seed=args.seed)
    engine: dict[str, Any] = {"slots": args.slots, "ctx": 1024, "threads": args.threads}
    print(f"model {args.model}  problems {len(problems)} (levels {args.level})  samples "
          f"{args.samples}  temperature {args.temperature}  max_tokens {args.max_tokens}  "
          f"slots {args.slots}  load {os.getloadavg()[0]:.2f}", flush=True)
    with LlamaCppServer(args.model, **engine) as server:
        arms = [await raw_arm(server.url, problems, args)]
        backend = OpenAIBackend(url=server.url)
        try:
            arms.append(await testtime_arm("testtime openai -> engine's server", backend,
                                           problems, args, seed=args.seed + 1))
        finally:
            await backend.close()
    local = EmbeddedBackend(model=args.model, **engine)
    try:
        arms.append(await testtime_arm("testtime embedded", local, problems, args,
                                       seed=args.seed + 2))
        extra = (await testtime_arm(f"testtime embedded, {args.also}", local, problems, args,
                                    seed=args.seed + 3, options=args.also)
                 if args.also else None)
    finally:
        await local.close()
    worst = (0.0, 1.0, "")
    for a, b in itertools.combinations(arms, 2):
        diff = (sum(a["acc"]) - sum(b["acc"])) / len(problems)
        p = paired_permutation_p(a["acc"], b["acc"])
        print(f"{a['name']} - {b['name']}: {diff:+.3f} (paired p = {p:.3f})")
        if abs(diff) >= abs(worst[0]):
            worst = (diff, p, f"{a['name']} vs {b['name']}")
    if extra is not None:
        diff = (sum(extra["acc"]) - sum(arms[0]["acc"])) / len(problems)
        print(f"{extra['name']} - {arms[0]['name']}: {diff:+.3f} "
              f"(paired p = {paired_permutation_p(extra['acc'], arms[0]['acc']):.3f})")
    print(f"load {os.getloadavg()[0]:.2f}")
    print(f"p-value of the largest difference ({worst[2]}, {worst[0]:+.3f}): {worst[1]:.3f}")
    return worst[1]


if __name__ == "__main__":
    try:
        asyncio.run(main(parse(sys.argv[1:])))
    except KeyboardInterrupt:
        sys.exit(130)
