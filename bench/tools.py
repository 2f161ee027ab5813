"""Thinking with tools on GSM8K training problems: accuracy against tokens, side by side.

Draws one pool of ``--k`` samples per problem and kind from the embedded model, each through
its strategy's own ``draw`` (the pool seam): programs (``program``, run in the sandbox) and
tool-integrated traces (``tool-integrated``), and chain of thought (``self-consistency``)
unless the GSM8K sweep's store (``--sweep``, ``examples/gsm8k-sweep.yaml``) holds it: then
chain of thought is the sweep's own 16-sample pools at T=0.4 and T=0.8 on the same problems
(problems the sweep has not reached are left out), so its temperature and k are tuned like
everything else. Every majority@k for k = 1, 2, 4, ... is scored from the first k samples of
each pool, and the CoT + program vote (``cross-check``'s ``cross_vote``) from the first k/2 of
each of those two pools, so all methods come from one set of pools. A sample's cost is its
share of its pool's total tokens (prompt, cached included, and generated), so majority@k costs
the k samples' tokens.

The last line is cross-fitted over two folds (by a hash of the problem id): on one fold the
best tool-using configuration (method and k) is chosen, and the chain-of-thought
configuration at matched tokens (per temperature the k whose mean tokens are nearest, then the
more accurate temperature); both are scored on the other fold, so every problem is scored
once, by choices made without it. It prints the ratio of the tool method's accuracy to CoT
majority@k's there (target >= 1.1; a miss is reported as measured).

    nice -n 10 python bench/tools.py --problems 120 --k 8 --sweep runs/gsm8k-sweep.db
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from rich.progress import Progress

from testtime.answers import is_correct
from testtime.backends.embedded import EmbeddedBackend
from testtime.eval.cache import load_json, save_json
from testtime.eval.crossfit import paired
from testtime.eval.difficulty import fold_of
from testtime.eval.swept import swept_units
from testtime.strategies import make_strategy
from testtime.strategies.base import derive_seed, open_context
from testtime.strategies.cross_check import cross_vote
from testtime.strategies.voting import vote
from testtime.tasks.gsm8k_train import Gsm8kTrainTask
from testtime.types import Candidate, Completion, Problem

KINDS = {"cot": "self-consistency:temperature={t},max_tokens={m}",
         "program": "program:temperature={t},max_tokens={m}",
         "tool": "tool-integrated:temperature={t},max_tokens={m},max_calls=3"}
TOOL_KINDS = ("program", "tool")
Pool = dict[str, dict[str, Any]]
MIN_BENCH_PROBLEMS = 100
"""Fewer problems than this give no headline ratio."""


def answered(answers: list[str | None]) -> list[Candidate]:
    """Bare candidates carrying ``answers``, for the votes."""
    return [Candidate(text="", answer=a, completion=Completion(text="")) for a in answers]


def drawn_kinds(args: argparse.Namespace) -> list[str]:
    """The kinds this run draws itself: chain of thought too unless the sweep holds it."""
    return list(TOOL_KINDS) if args.sweep else list(KINDS)


def is_cot(kind: str) -> bool:
    """Whether a pool kind is chain of thought (drawn here, or one of the sweep's)."""
    return kind.startswith("cot")


async def draw_pools(problems: list[Problem], backend: EmbeddedBackend, args: argparse.Namespace,
                     pools: dict[str, Pool]) -> None:
    """Fill ``pools[problem][kind]`` with k drawn answers and their pool's total tokens,
    ``args.concurrency`` problems at a time (a trace waiting on the sandbox leaves its engine
    slot to another problem's), saving the cache after each problem."""
    gate = asyncio.Semaphore(args.concurrency)

    async def one(problem: Problem) -> None:
        async with gate:
            have = pools.setdefault(problem.id, {})
            for kind in drawn_kinds(args):
                if kind in have:
                    continue
                spec = KINDS[kind].format(t=args.temperature, m=args.max_tokens)
                strategy = make_strategy(spec)
                ctx = open_context(strategy, backend,
                                   seed=derive_seed(args.seed, problem.id, kind))
                drawn = await strategy.draw(problem, ctx, args.k)
                usage = ctx.ledger.close()
                have[kind] = {"answers": [c.answer for c in drawn],
                              "tokens": usage.total_tokens, "sandbox_runs": usage.sandbox_runs}
        if args.pool:
            save_json(Path(args.pool), {"key": pool_key(args), "pools": pools})
        bar.advance(task)

    todo = [p for p in problems if set(drawn_kinds(args)) - set(pools.get(p.id, {}))]
    with Progress() as bar:
        task = bar.add_task(f"pools: {len(todo)} problems x {args.k} samples per kind",
                            total=len(todo))
        await asyncio.gather(*(one(p) for p in todo))


def swept_cot(path: Path, model: str, max_tokens: int) -> dict[str, Pool]:
    """Per problem, the GSM8K sweep's chain-of-thought pools (its ``weighted-vote`` units of
    ``model`` at ``max_tokens``), one kind per temperature (``cot T=0.4``): each sample's
    answer as the sweep graded it, and the pool's total tokens."""
    out: dict[str, Pool] = {}
    for unit in swept_units(path, task="gsm8k-train", model=model, strategy="weighted-vote"):
        if unit.strategy.max_tokens != max_tokens:
            continue
        usage = unit.record["usage"]
        out.setdefault(unit.problem_id, {})[f"cot T={unit.strategy.temperature:g}"] = {
            "answers": [c["answer"] for c in unit.record["candidates"]],
            "tokens": usage["prompt_tokens"] + usage["generated_tokens"],
            "sandbox_runs": 0}
    return out


def pool_key(args: argparse.Namespace) -> str:
    """What a cached pool was drawn with; a pool drawn otherwise is not reused."""
    return f"{args.model}|{args.seed}|{args.k}|{args.temperature}|{args.max_tokens}"


def outcome(problem: Problem, pool: Pool, method: str, k: int) -> tuple[bool, float]:
    """Whether ``method`` at ``k`` answers ``problem`` right, and the tokens it costs."""
    def first(kind: str, j: int) -> tuple[list[str | None], float]:
        entry = pool[kind]
        got = entry["answers"][:j]
        return got, entry["tokens"] / max(len(entry["answers"]), 1) * len(got)

    if method.startswith("cross "):
        traces, t_cost = first(method.removeprefix("cross "), (k + 1) // 2)
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


Scores = dict[tuple[str, int], tuple[list[bool], list[float]]]


def table(problems: list[Problem], pools: dict[str, Pool]) -> Scores:
    """(method, k) -> per-problem correctness and tokens, for every k = 1, 2, 4, ... that
    every problem's pools hold."""
    kinds = sorted(set.intersection(*(set(pools[p.id]) for p in problems)))
    size = {kind: min(len(pools[p.id][kind]["answers"]) for p in problems) for kind in kinds}
    methods = {kind: size[kind] for kind in kinds}
    methods |= {f"cross {kind}": min(size[kind], size["program"]) * 2 for kind in kinds
                if is_cot(kind) and "program" in size}
    out = {}
    for method, most in methods.items():
        for k in (1, 2, 4, 8, 16, 32, 64):
            if k <= most and (k >= 2 or not method.startswith("cross ")):
                rows = [outcome(p, pools[p.id], method, k) for p in problems]
                out[method, k] = ([r[0] for r in rows], [r[1] for r in rows])
    return out


def crossfit(problems: list[Problem], scores: Scores, seed: int
             ) -> tuple[list[float], list[float], float, float, list[str]]:
    """Held-out correctness, problem by problem, of the best tool configuration and of CoT
    at its tokens, each chosen on the other fold; their held-out mean tokens; and what each
    fold chose."""
    folds = [fold_of(p.id, 2, seed) for p in problems]
    tool_right, cot_right, tool_tok, cot_tok, picked = [], [], [], [], []
    for f in (0, 1):
        train = [i for i, g in enumerate(folds) if g != f]
        test = [i for i, g in enumerate(folds) if g == f]
        if not train or not test:
            continue

        def acc(key: tuple[str, int], idx: list[int]) -> float:
            return mean([float(scores[key][0][i]) for i in idx])

        def tok(key: tuple[str, int], idx: list[int]) -> float:
            return mean([scores[key][1][i] for i in idx])

        tools = [key for key in scores if not is_cot(key[0])]
        best = max(tools, key=lambda key: (acc(key, train), -tok(key, train)))
        nearest = [min((key for key in scores if key[0] == kind),
                       key=lambda key: abs(tok(key, train) - tok(best, train)))
                   for kind in {key[0] for key in scores if is_cot(key[0])}]
        cot = max(nearest, key=lambda key: (acc(key, train), -tok(key, train)))
        tool_right += [scores[best][0][i] for i in test]
        cot_right += [scores[cot][0][i] for i in test]
        tool_tok += [scores[best][1][i] for i in test]
        cot_tok += [scores[cot][1][i] for i in test]
        picked.append(f"fold {f}: {best[0]}@{best[1]} vs {cot[0]}@{cot[1]}")
    return ([float(x) for x in tool_right], [float(x) for x in cot_right], mean(tool_tok),
            mean(cot_tok), picked)


async def main() -> None:
    """Draw (or load) the pools, print the curves, then the cross-fitted ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=120)
    parser.add_argument("--k", type=int, default=8, help="samples drawn per problem and kind")
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=2, help="problems drawn at once")
    parser.add_argument("--pool", default="bench/results/tools-pool-gsm8k.json",
                        help="JSON file caching the drawn pools (answers and tokens; committed, "
                        "so a later run resumes)")
    parser.add_argument("--sweep", type=Path, default=None,
                        help="the GSM8K sweep's store: its pools are the chain of thought "
                        "(e.g. runs/gsm8k-sweep.db)")
    args = parser.parse_args()
    problems = Gsm8kTrainTask().problems(limit=args.problems, seed=args.seed)
    if args.sweep:
        cot = swept_cot(args.sweep, args.model, args.max_tokens)
        reached = [p for p in problems if p.id in cot]
        print(f"chain of thought: the sweep's pools ({', '.join(sorted(cot[reached[0].id]))}) "
              f"on {len(reached)} of the first {len(problems)} problems; the others are left "
              "out" if reached else "the sweep holds none of these problems")
        problems = reached
        if not problems:
            return
    pools: dict[str, Pool] = {}
    if args.pool:
        cached = load_json(Path(args.pool))
        if cached.get("key") == pool_key(args):
            pools = cached["pools"]
    if any(set(drawn_kinds(args)) - set(pools.get(p.id, {})) for p in problems):
        backend = EmbeddedBackend(model=args.model, slots=max(args.k, 4) * args.concurrency)
        backend.start()
        await draw_pools(problems, backend, args, pools)
    merged = {p.id: {**pools[p.id], **(cot[p.id] if args.sweep else {})} for p in problems}
    scores = table(problems, merged)
    print(f"{'method':<18}{'k':>4}{'accuracy':>10}{'mean tokens':>13}")
    for (method, k), (right, tokens) in scores.items():
        print(f"{method:<18}{k:>4}{mean([float(r) for r in right]):>10.3f}{mean(tokens):>13.0f}")
    runs = mean([float(merged[p.id][kind]["sandbox_runs"]) for p in problems
                 for kind in TOOL_KINDS])
    print(f"sandbox runs per pool (program, tool): {runs:.1f}")
    tool_right, cot_right, tool_tok, cot_tok, picked = crossfit(problems, scores, args.seed)
    tool_acc, cot_acc = mean(tool_right), mean(cot_right)
    diff = paired(tool_right, cot_right)
    print(f"chosen on the other fold: {'; '.join(picked)}")
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
