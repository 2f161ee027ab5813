"""Fewer tokens for the same accuracy: DeepConf, certainty probing, early-stop against SC@16.

Draws one pool of ``--pool-n`` samples per ``arith`` problem (levels 3-5, fixed seeds) from the
embedded model, with every token's logprob and top logprobs, and caches it in ``--pool``. Every
method then runs its own strategy code on that pool through ``ReplayBackend``: samples are
served in the order they were drawn, online traces are streamed token by token and stopped
where the strategy stops them (billed the tokens streamed until then), and certainty probes
are real continuations on the live model, billed as it counts them. Prints accuracy with a
bootstrap 95% interval, generated tokens and stopped traces per method side by side, then the
cheapest method (majority@k of the pool aside) at SC@16's own accuracy; the last line is the
share of SC@16's generated tokens that the cheapest method needs at an accuracy no lower than
SC@16's lower bound (1.0 when none does). ``--plot`` draws accuracy against tokens.

    nice -n 10 python bench/efficiency.py --problems 40 --pool runs/efficiency-pool.json \
        --plot docs/img/efficiency.png
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from rich.progress import Progress

from testtime.answers import extract_answer, is_correct
from testtime.backends.embedded import EmbeddedBackend
from testtime.confidence import token_scores, trace_confidence
from testtime.eval.plots import accuracy_figure
from testtime.eval.replay import ReplayBackend
from testtime.eval.runner import solve
from testtime.eval.stats import ConfigStats, bootstrap_ci
from testtime.strategies import make_strategy
from testtime.strategies.base import derive_seed
from testtime.tasks.arith import ArithTask
from testtime.types import Completion, GenerationRequest, Problem

METHODS = (
    "self-consistency:n=16",
    "self-consistency:n=8",
    "self-consistency:n=4",
    "early-stop:max_n=16,batch=4",
    "early-stop:max_n=16,batch=4,threshold=0.8",
    "deepconf:mode=offline,n=16,eta=90",
    "deepconf:mode=offline,n=16,eta=10",
    "deepconf:mode=online,n=16,warmup=4,batch=4,eta=90",
    "deepconf:mode=online,n=16,warmup=4,batch=4,eta=10",
    "deepconf:mode=online,n=16,warmup=4,batch=4,eta=90,consensus=0.75",
    "deepconf:mode=online,n=8,warmup=4,batch=4,eta=90",
    "certainty-probe:n=1,probe_every=16,k=3",
    "certainty-probe:n=4,probe_every=32,k=2",
    "certainty-probe:n=4,probe_every=32,k=2,min_certainty=0.9",
    "short-m:n=16,m=1",
    "short-m:n=16,m=3",
    "short-m:n=8,m=1",
    "short-m:n=8,m=3",
)


def parse(argv: list[str]) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--problems", type=int, default=48)
    ap.add_argument("--limit", type=int, default=None, help="smoke run: first N problems only")
    ap.add_argument("--levels", default="3+4+5")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pool-n", type=int, default=16, help="samples drawn per problem")
    ap.add_argument("--max-tokens", type=int, default=320)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--top-logprobs", type=int, default=5)
    ap.add_argument("--pool", type=Path, default=Path("runs/efficiency-pool.json"),
                    help="cache of the sample pool; re-runs reuse it")
    ap.add_argument("--concurrency", type=int, default=2, help="problems solved at once")
    ap.add_argument("--methods", default=";".join(METHODS), help="';'-separated specs "
                    "(the first is the baseline the share is taken of)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--plot", type=Path, default=None,
                    help="also draw accuracy against generated tokens to this PNG")
    ap.add_argument("--pool-only", action="store_true", help="draw the pool, compare nothing")
    ap.add_argument("--cached", action="store_true",
                    help="compare on the problems already in the pool, drawing no more")
    args = ap.parse_args(argv)
    args.methods = [m.strip() for m in args.methods.split(";") if m.strip()]
    return args


def pool_key(args: argparse.Namespace) -> str:
    """What a cached pool was drawn with; a pool drawn otherwise is not reused."""
    return (f"{args.model}|{args.levels}|{args.seed}|{args.pool_n}|{args.max_tokens}|"
            f"{args.temperature}|{args.top_logprobs}")


async def draw_pool(problems: list[Problem], engine: EmbeddedBackend,
                    args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Each problem's pool: ``pool_n`` samples with token logprobs, cached in ``--pool``."""
    cached: dict[str, Any] = {}
    if args.pool.exists():
        data = json.loads(args.pool.read_text())
        if data.get("key") == pool_key(args):
            cached = data["pools"]
    missing = [] if args.cached else [p for p in problems if p.id not in cached]
    gate = asyncio.Semaphore(args.concurrency)

    async def one(p: Problem) -> None:
        async with gate:
            gen = await engine.generate(GenerationRequest(
                prompt=p.prompt(), n=args.pool_n, temperature=args.temperature,
                max_tokens=args.max_tokens, seed=derive_seed(args.seed, p.id), logprobs=True,
                top_logprobs=args.top_logprobs))
        cached[p.id] = {"prompt_tokens": gen.prompt_tokens,
                        "samples": [c.model_dump(mode="json") for c in gen.completions]}
        args.pool.parent.mkdir(parents=True, exist_ok=True)
        args.pool.write_text(json.dumps({"key": pool_key(args), "pools": cached}))
        bar.advance(task)

    with Progress() as bar:
        task = bar.add_task(f"pool: {len(missing)} problems x {args.pool_n} samples",
                            total=len(missing))
        await asyncio.gather(*(one(p) for p in missing))
    return cached


async def run_method(spec: str, problems: list[Problem], pools: dict[str, Any],
                     engine: EmbeddedBackend, args: argparse.Namespace,
                     bar: Progress) -> list[dict[str, Any]]:
    """Solve every problem with ``spec`` on its pool; one record per problem."""
    gate = asyncio.Semaphore(args.concurrency)
    task = bar.add_task(spec, total=len(problems))

    async def one(p: Problem) -> dict[str, Any]:
        pool = pools[p.id]
        backend = ReplayBackend([Completion.model_validate(c) for c in pool["samples"]],
                                prompt_tokens=pool["prompt_tokens"], live=engine)
        async with gate:
            result = await solve(p, make_strategy(spec), backend, seed=args.seed, spec=spec)
        bar.advance(task)
        u = result.usage
        return {"correct": float(is_correct(result.answer, p.reference)),
                "generated_tokens": u.generated_tokens, "stopped_traces": u.stopped_traces,
                "stopped_tokens": u.stopped_tokens, "calls": u.calls,
                "served": backend.served}

    return list(await asyncio.gather(*(one(p) for p in problems)))


SIGNALS = {"shorter trace": lambda scores: -float(len(scores)),
           "mean confidence": lambda scores: trace_confidence(scores, "mean"),
           "lowest window (32)": lambda scores: trace_confidence(scores, "lowest-window", 32),
           "bottom 10% (32)": lambda scores: trace_confidence(scores, "bottom", 32, 0.1),
           "tail (32)": lambda scores: trace_confidence(scores, "tail", 32)}


def separation(problems: list[Problem], pools: dict[str, Any]) -> dict[str, float]:
    """Per signal, the mean over problems of P(a right trace scores above a wrong one)."""
    aucs: dict[str, list[float]] = {name: [] for name in SIGNALS}
    for p in problems:
        rows = []
        for c in pools[p.id]["samples"]:
            scores = token_scores(c["logprobs"], c["top_logprobs"])
            right = is_correct(extract_answer(c["text"]), p.reference)
            rows.append((right, {name: f(scores) for name, f in SIGNALS.items()}))
        right = [r[1] for r in rows if r[0]]
        wrong = [r[1] for r in rows if not r[0]]
        if not right or not wrong:
            continue
        for name in SIGNALS:
            wins = [(a[name] > b[name]) + 0.5 * (a[name] == b[name]) for a in right for b in wrong]
            aucs[name].append(sum(wins) / len(wins))
    return {name: sum(v) / len(v) for name, v in aucs.items() if v}


def summary(records: list[dict[str, Any]]) -> dict[str, float]:
    """Accuracy with its bootstrap interval, mean tokens and stopped traces per problem."""
    acc = [r["correct"] for r in records]
    lo, hi = bootstrap_ci(acc, reps=2000)
    n = len(records)
    return {"accuracy": sum(acc) / n, "lo": lo, "hi": hi,
            "tokens": sum(r["generated_tokens"] for r in records) / n,
            "stopped": sum(r["stopped_traces"] for r in records) / n,
            "stopped_tokens": sum(r["stopped_tokens"] for r in records) / n,
            "samples": sum(r["served"] for r in records) / n}


def plot(rows: dict[str, dict[str, float]], args: argparse.Namespace, problems: int) -> None:
    """Accuracy (with its interval) against generated tokens, one marker style per family."""
    stats = [ConfigStats(config=spec, family="majority" if spec.startswith("self-consistency")
                         else spec.split(":")[0], k=0, backend=args.model, budget=None,
                         problems=problems, mean={"correct": r["accuracy"],
                                                  "generated_tokens": r["tokens"]},
                         ci={"correct": (r["lo"], r["hi"])}) for spec, r in rows.items()]
    accuracy_figure(stats, "generated_tokens", f"arith levels {args.levels}, {problems} "
                    f"problems, {args.model}: accuracy against generated tokens", args.plot)
    print(f"plot: {args.plot}")


async def main(args: argparse.Namespace) -> float:
    """Draw (or load) the pool, replay every method, print the table and the share."""
    task = ArithTask(level=args.levels, seed=args.seed)
    problems = task.problems(args.problems)[:args.limit]
    engine = EmbeddedBackend(model=args.model, slots=max(args.pool_n * args.concurrency, 8),
                             ctx=max(1024, args.max_tokens + 512), threads=args.threads)
    await engine.ready()
    pools = await draw_pool(problems, engine, args)
    if args.pool_only:
        return 0.0
    problems = [p for p in problems if p.id in pools]
    rows: dict[str, dict[str, float]] = {}
    with Progress() as bar:
        for spec in args.methods:
            rows[spec] = summary(await run_method(spec, problems, pools, engine, args, bar))
    await engine.close()
    base = rows[args.methods[0]]
    print(f"arith levels {args.levels}, {len(problems)} problems, seed {args.seed}, "
          f"{args.model}, pool of {args.pool_n} samples per problem (max_tokens "
          f"{args.max_tokens}, T={args.temperature}); every method replays its own strategy "
          "code on the shared pool (online stops at the token the strategy stopped; certainty "
          "probes run live)")
    auc = separation(problems, pools)
    print("how well a trace's signal tells its right from its wrong traces, within a problem "
          "(mean AUC; 0.5 is chance): " + ", ".join(f"{k} {v:.3f}" for k, v in auc.items()))
    print(f"{'method':52s} {'acc':>6s} {'95% CI':>13s} {'gen tok':>8s} {'share':>6s} "
          f"{'samples':>7s} {'stopped':>7s} {'stop tok':>8s}")
    for spec, r in rows.items():
        print(f"{spec:52s} {r['accuracy']:6.3f} [{r['lo']:.3f},{r['hi']:.3f}] "
              f"{r['tokens']:8.1f} {r['tokens'] / base['tokens']:6.3f} {r['samples']:7.2f} "
              f"{r['stopped']:7.2f} {r['stopped_tokens']:8.1f}")
    if args.plot is not None:
        plot(rows, args, len(problems))
    others = {s: r for s, r in rows.items() if not s.startswith("self-consistency")}
    level = {s: r for s, r in others.items() if r["accuracy"] >= base["accuracy"]}
    if level:
        same = min(level, key=lambda s: level[s]["tokens"])
        print(f"cheapest at accuracy >= SC@16's own {base['accuracy']:.3f}: {same} (accuracy "
              f"{rows[same]['accuracy']:.3f}, share {rows[same]['tokens'] / base['tokens']:.3f})")
    good = {s: r for s, r in others.items() if r["accuracy"] >= base["lo"]}
    best = min(good, key=lambda s: good[s]["tokens"], default=args.methods[0])
    share = rows[best]["tokens"] / base["tokens"]
    print(f"cheapest method (majority@k rows aside) at accuracy >= SC@16's lower bound "
          f"{base['lo']:.3f}: {best} (accuracy {rows[best]['accuracy']:.3f})")
    print(f"share of SC@16 generated tokens needed: {share:.3f}")
    return share


if __name__ == "__main__":
    sys.exit(0 if asyncio.run(main(parse(sys.argv[1:]))) <= 1.0 else 1)
