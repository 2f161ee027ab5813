"""Thinking with tools on GSM8K training problems: accuracy against tokens, side by side.

Draws one pool of ``--k`` samples per problem and kind from the embedded model, each through
its strategy's own ``draw`` (the pool seam): chain of thought (``self-consistency``), programs
(``program``, run in the sandbox) and tool-integrated traces (``tool-integrated``). Every
majority@k for k = 1, 2, 4, ... is then scored from the first k samples of each pool, and the
CoT + program vote (``cross-check``'s ``cross_vote``) from the first k/2 of each of those two
pools, so all methods come from one run. A sample's cost is its share of its pool's total
tokens (prompt, cached included, and generated), so majority@k costs the k samples' tokens.

The last line is cross-fitted over two folds (by a hash of the problem id): on one fold the
best tool-using configuration (method and k) is chosen, and the chain-of-thought k whose mean
tokens are nearest to it; both are scored on the other fold, so every problem is scored once,
by choices made without it. It prints the ratio of the tool method's accuracy to CoT
majority@k's there (target >= 1.1; a miss is reported as measured).

    nice -n 10 python bench/tools.py --problems 120 --k 8 --pool runs/tools-pool.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from testtime.answers import is_correct
from testtime.backends.embedded import EmbeddedBackend
from testtime.eval.crossfit import paired
from testtime.eval.difficulty import fold_of
from testtime.strategies import make_strategy
from testtime.strategies.base import derive_seed, open_context
from testtime.strategies.cross_check import cross_vote
from testtime.strategies.voting import vote
from testtime.tasks.gsm8k_train import Gsm8kTrainTask
from testtime.types import Candidate, Completion, Problem

KINDS = {"cot": "self-consistency:temperature={t},max_tokens={m}",
         "program": "program:temperature={t},max_tokens={m}",
         "tool": "tool-integrated:temperature={t},max_tokens={m},max_calls=3"}
Pool = dict[str, dict[str, Any]]
MIN_BENCH_PROBLEMS = 100
"""Fewer problems than this give no headline ratio."""


def answered(answers: list[str | None]) -> list[Candidate]:
    """Bare candidates carrying ``answers``, for the votes."""
    return [Candidate(text="", answer=a, completion=Completion(text="")) for a in answers]


async def draw_pools(problems: list[Problem], backend: EmbeddedBackend, args: argparse.Namespace,
                     pools: dict[str, Pool]) -> None:
    """Fill ``pools[problem][kind]`` with k drawn answers and their pool's total tokens."""
    for problem in problems:
        have = pools.setdefault(problem.id, {})
        for kind, spec in KINDS.items():
            if kind in have:
                continue
            strategy = make_strategy(spec.format(t=args.temperature, m=args.max_tokens))
            ctx = open_context(strategy, backend, seed=derive_seed(args.seed, problem.id, kind))
            drawn = await strategy.draw(problem, ctx, args.k)
            usage = ctx.ledger.close()
            have[kind] = {"answers": [c.answer for c in drawn], "tokens": usage.total_tokens,
                          "sandbox_runs": usage.sandbox_runs}
        if args.pool:
            Path(args.pool).write_text(json.dumps({"key": pool_key(args), "pools": pools}))
        print(f"drew {problem.id}", flush=True)


def pool_key(args: argparse.Namespace) -> str:
    """What a cached pool was drawn with; a pool drawn otherwise is not reused."""
    return f"{args.model}|{args.seed}|{args.k}|{args.temperature}|{args.max_tokens}"


def outcome(problem: Problem, pool: Pool, method: str, k: int) -> tuple[bool, float]:
    """Whether ``method`` at ``k`` answers ``problem`` right, and the tokens it costs."""
    def first(kind: str, j: int) -> tuple[list[str | None], float]:
        entry = pool[kind]
        got = entry["answers"][:j]
        return got, entry["tokens"] / max(len(entry["answers"]), 1) * len(got)

    if method == "cross":
        traces, t_cost = first("cot", (k + 1) // 2)
        programs, p_cost = first("program", k // 2)
        answer = cross_vote(answered(traces), answered(programs), 1.0)[0]
        cost = t_cost + p_cost
    else:
        answers, cost = first(method, k)
        answer = vote(answered(answers))[0]
    return bool(is_correct(answer, problem.reference or "")), cost


def mean(xs: list[float]) -> float:
    """The mean (0 for none)."""
    return sum(xs) / len(xs) if xs else 0.0


def table(problems: list[Problem], pools: dict[str, Pool], ks: list[int]
          ) -> dict[tuple[str, int], tuple[list[bool], list[float]]]:
    """(method, k) -> per-problem correctness and tokens."""
    out = {}
    for method in ("cot", "program", "tool", "cross"):
        for k in ks if method != "cross" else [k for k in ks if k >= 2]:
            rows = [outcome(p, pools[p.id], method, k) for p in problems]
            out[method, k] = ([r[0] for r in rows], [r[1] for r in rows])
    return out


def crossfit(problems: list[Problem], scores: dict[tuple[str, int], tuple[list[bool],
             list[float]]], seed: int) -> tuple[list[float], list[float], float, float]:
    """Held-out correctness, problem by problem, of the best tool configuration and of CoT
    at its tokens, each chosen on the other fold; and their held-out mean tokens."""
    folds = [fold_of(p.id, 2, seed) for p in problems]
    tool_right, cot_right, tool_tok, cot_tok = [], [], [], []
    for f in (0, 1):
        train = [i for i, g in enumerate(folds) if g != f]
        test = [i for i, g in enumerate(folds) if g == f]
        if not train or not test:
            continue

        def acc(key: tuple[str, int], idx: list[int]) -> float:
            return mean([float(scores[key][0][i]) for i in idx])

        def tok(key: tuple[str, int], idx: list[int]) -> float:
            return mean([scores[key][1][i] for i in idx])

        tools = [key for key in scores if key[0] != "cot"]
        best = max(tools, key=lambda key: (acc(key, train), -tok(key, train)))
        cots = [key for key in scores if key[0] == "cot"]
        cot = min(cots, key=lambda key: abs(tok(key, train) - tok(best, train)))
        tool_right += [scores[best][0][i] for i in test]
        cot_right += [scores[cot][0][i] for i in test]
        tool_tok += [scores[best][1][i] for i in test]
        cot_tok += [scores[cot][1][i] for i in test]
    return ([float(x) for x in tool_right], [float(x) for x in cot_right], mean(tool_tok),
            mean(cot_tok))


async def main() -> None:
    """Draw (or load) the pools, print the curves, then the cross-fitted ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=120)
    parser.add_argument("--k", type=int, default=8, help="samples drawn per problem and kind")
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pool", default="", help="JSON file caching the drawn pools")
    args = parser.parse_args()
    problems = Gsm8kTrainTask().problems(limit=args.problems, seed=args.seed)
    pools: dict[str, Pool] = {}
    if args.pool and Path(args.pool).exists():
        cached = json.loads(Path(args.pool).read_text())
        if cached.get("key") == pool_key(args):
            pools = cached["pools"]
    if any(set(KINDS) - set(pools.get(p.id, {})) for p in problems):
        backend = EmbeddedBackend(model=args.model, slots=max(args.k, 4))
        backend.start()
        await draw_pools(problems, backend, args, pools)
    ks = [k for k in (1, 2, 4, 8, 16, 32, 64) if k <= args.k]
    scores = table(problems, pools, ks)
    print(f"{'method':<10}{'k':>4}{'accuracy':>10}{'mean tokens':>13}")
    for (method, k), (right, tokens) in scores.items():
        print(f"{method:<10}{k:>4}{mean([float(r) for r in right]):>10.3f}{mean(tokens):>13.0f}")
    runs = mean([float(pools[p.id][kind]["sandbox_runs"]) for p in problems
                 for kind in ("program", "tool")])
    print(f"sandbox runs per pool (program, tool): {runs:.1f}")
    tool_right, cot_right, tool_tok, cot_tok = crossfit(problems, scores, args.seed)
    tool_acc, cot_acc = mean(tool_right), mean(cot_right)
    diff = paired(tool_right, cot_right)
    print(f"cross-fitted over {len(tool_right)} held-out problems: best tool-using method "
          f"{tool_acc:.3f} at {tool_tok:.0f} tokens, CoT majority@k {cot_acc:.3f} at "
          f"{cot_tok:.0f} tokens; paired difference {diff}")
    if len(problems) < MIN_BENCH_PROBLEMS or not cot_acc:
        why = (f"{len(problems)} problems < {MIN_BENCH_PROBLEMS}" if cot_acc
               else "chain-of-thought majority@k answered none")
        print(f"ratio not measured ({why}; target >= 1.1)")
        return
    print(f"ratio {tool_acc / cot_acc:.2f} (tool-using / chain-of-thought majority@k at matched "
          f"mean tokens, {len(problems)} problems, paired difference {diff}; target >= 1.1: "
          f"{'met' if tool_acc / cot_acc >= 1.1 else 'missed'})")


if __name__ == "__main__":
    asyncio.run(main())
