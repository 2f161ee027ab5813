"""Fewer tokens for the same accuracy, cross-fitted on GSM8K: DeepConf, certainty probing,
short-m and early stopping against self-consistency@16.

Protocol (fixed before any result was seen; the rules of ``testtime.eval.crossfit``):

- Problems: the first ``--problems`` GSM8K training problems of the shipped seeded order (the
  problems of ``examples/gsm8k-sweep.yaml``), split into ``--folds`` folds by a hash of the id.
- Pools: per temperature in ``--temperatures``, ``--pool-n`` samples per problem from the
  embedded model with every token's logprob and top logprobs: the GSM8K sweep's own
  ``weighted-vote`` pools where its store (``--sweep``) kept their logprobs
  (``keep_logprobs``), else drawn here and cached in ``--pool``. Every
  setting of every method runs its own strategy code on its temperature's pool through
  ``ReplayBackend``: majority@k reads the first k samples, online methods stream them token by
  token and are billed where they stop them, and certainty probes run live on the engine,
  billed as a live run bills them (the trace is charged what the engine generates while its
  probe runs, the probe's prompt re-read counts in total tokens and FLOPs).
- Choices, on the training folds only: SC@16's temperature (most accurate); per method family
  the setting (temperature, threshold, eta, probe settings, n, m) that is cheapest among those
  non-inferior to SC@16 there (the lower end of the paired 95% interval of the difference at
  least -0.05), else the most accurate; the majority@k at matched tokens (the k, at the same
  temperature, whose mean generated tokens are nearest the method's); and the best efficient
  method over all families by the same rule. Each held-out problem is scored once, by choices
  made without it.
- Reported over all folds: accuracy, generated tokens, total tokens (prompt, re-reads
  and cached prefixes included, plus generated) and FLOPs, each method's paired difference
  against SC@16 and against majority@k on the same traces at matched tokens.

The last line is the share of SC@16's generated tokens at which the best efficient method is
non-inferior to SC@16 on the held-out folds (1.0 where it is not), with the paired interval
beside it. Target: <= 0.5. Per-problem outcomes are cached in ``--results`` (committed, with
a fingerprint of the pool each came from), so a rerun resumes, and a problem whose pool is gone
keeps its outcomes; a setting is rerun on a problem only together with every other, on one pool.

    nice -n 10 python bench/efficiency.py --problems 120 --plot docs/img/efficiency.png
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import Progress

from testtime.answers import extract_answer, is_correct
from testtime.backends.embedded import EmbeddedBackend
from testtime.confidence import token_scores, trace_confidence
from testtime.eval.cache import load_json, save_json
from testtime.eval.crossfit import MARGIN, MIN_PROBLEMS, Paired, Scores, assign_folds, paired
from testtime.eval.plots import accuracy_figure
from testtime.eval.replay import ReplayBackend
from testtime.eval.runner import solve
from testtime.eval.stats import ConfigStats, bootstrap_ci
from testtime.eval.swept import swept_units
from testtime.strategies import make_strategy
from testtime.strategies.base import derive_seed
from testtime.tasks.gsm8k_train import Gsm8kTrainTask
from testtime.types import Completion, GenerationRequest, Problem

MAJORITY = "majority"
BASELINE = "self-consistency:n=16"
FAMILIES: dict[str, tuple[str, ...]] = {
    MAJORITY: tuple(f"self-consistency:n={k}" for k in (1, 2, 4, 8, 16)),
    "early-stop": ("early-stop:max_n=16,batch=4", "early-stop:max_n=16,batch=4,threshold=0.8",
                   "early-stop:max_n=16,batch=2,threshold=0.9"),
    "deepconf offline": ("deepconf:mode=offline,n=16,eta=90", "deepconf:mode=offline,n=16,eta=10"),
    "deepconf online": ("deepconf:mode=online,n=16,warmup=4,batch=4,eta=90",
                        "deepconf:mode=online,n=16,warmup=4,batch=4,eta=10",
                        "deepconf:mode=online,n=16,warmup=4,batch=4,eta=90,consensus=0.75",
                        "deepconf:mode=online,n=8,warmup=4,batch=4,eta=90"),
    "certainty probe": ("certainty-probe:n=1,probe_every=32,k=3",
                        "certainty-probe:n=4,probe_every=32,k=2",
                        "certainty-probe:n=4,probe_every=32,k=2,min_certainty=0.9"),
    "short-m": ("short-m:n=16,m=1", "short-m:n=16,m=3", "short-m:n=8,m=1", "short-m:n=8,m=3"),
}
COSTS = ("generated_tokens", "total_tokens", "flops")


@dataclass(frozen=True)
class Setting:
    """One method setting run on one temperature's pool."""

    family: str
    spec: str
    temperature: float

    @property
    def key(self) -> str:
        """How results are keyed: the spec and its pool's temperature."""
        return f"{self.spec}@T={self.temperature:g}"


def parse(argv: list[str]) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--problems", type=int, default=120)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--folds", type=int, default=2)
    ap.add_argument("--temperatures", default="0.4,0.8")
    ap.add_argument("--pool-n", type=int, default=16, help="samples drawn per problem")
    ap.add_argument("--max-tokens", type=int, default=512)
    ap.add_argument("--top-logprobs", type=int, default=5)
    ap.add_argument("--sweep", type=Path, default=Path("runs/gsm8k-sweep.db"),
                    help="a sweep store whose weighted-vote pools kept their logprobs: used as "
                    "the pools where they match (examples/gsm8k-sweep.yaml)")
    ap.add_argument("--pool", type=Path, default=Path("runs/efficiency-gsm8k-pool.json"),
                    help="cache of the pools drawn here; reruns reuse it")
    ap.add_argument("--results", type=Path,
                    default=Path("bench/results/efficiency-gsm8k.json"),
                    help="per-problem outcomes with their pools' fingerprints; reruns resume")
    ap.add_argument("--no-draw", action="store_true",
                    help="draw no pools: leave out the problems whose outcomes need one that "
                    "is not at hand (the sweep has not kept it)")
    ap.add_argument("--concurrency", type=int, default=2, help="problems solved at once")
    ap.add_argument("--families", default=",".join(FAMILIES),
                    help="comma-separated method families (majority is always included)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--plot", type=Path, default=None,
                    help="also draw held-out accuracy against generated tokens to this PNG")
    args = ap.parse_args(argv)
    args.temperatures = [float(t) for t in args.temperatures.split(",") if t.strip()]
    args.families = [MAJORITY] + [f for f in args.families.split(",")
                                  if f.strip() and f != MAJORITY]
    unknown = set(args.families) - set(FAMILIES)
    if unknown:
        ap.error(f"unknown families {sorted(unknown)}; known: {', '.join(FAMILIES)}")
    return args


def settings(args: argparse.Namespace) -> list[Setting]:
    """Every setting the bench runs: each family's specs on each temperature's pool."""
    return [Setting(family, spec, t) for family in args.families for spec in FAMILIES[family]
            for t in args.temperatures]


def pool_key(args: argparse.Namespace, temperature: float) -> str:
    """What a cached pool was drawn with; a pool drawn otherwise is not reused."""
    return (f"{args.model}|gsm8k-train|{args.seed}|{args.pool_n}|{args.max_tokens}|"
            f"{temperature:g}|{args.top_logprobs}")


def fingerprint(pool: dict[str, Any]) -> str:
    """What identifies one problem's pool: a hash of its samples' texts."""
    texts = json.dumps([c["text"] for c in pool["samples"]])
    return hashlib.sha256(texts.encode()).hexdigest()[:16]


def swept_pools(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Per pool key, the pools a sweep store kept with their logprobs: ``weighted-vote``
    units of this model drawn with this bench's n, temperature and max_tokens."""
    if not args.sweep.is_file():
        return {}
    pools: dict[str, dict[str, Any]] = {}
    for unit in swept_units(args.sweep, task="gsm8k-train", model=args.model,
                            strategy="weighted-vote", with_kept=True):
        strategy = unit.strategy
        if (not unit.kept or strategy.n != args.pool_n
                or strategy.max_tokens != args.max_tokens
                or strategy.temperature not in args.temperatures
                or any(c["top_logprobs"] is None for c in unit.kept)):
            continue
        pools.setdefault(pool_key(args, strategy.temperature), {})[unit.problem_id] = {
            "prompt_tokens": unit.record["usage"]["prompt_tokens"],
            "samples": [Completion.model_validate(c).model_dump(mode="json")
                        for c in unit.kept]}
    return pools


def needs_pool(results: dict[str, Any], args: argparse.Namespace, temperature: float,
               problem: Problem) -> bool:
    """Whether some setting at ``temperature`` has no outcome on ``problem`` yet."""
    return any(problem.id not in results["outcomes"].get(s.key, {}) for s in settings(args)
               if s.temperature == temperature)


async def draw_pools(problems: list[Problem], engine: EmbeddedBackend,
                     args: argparse.Namespace, results: dict[str, Any]
                     ) -> dict[str, dict[str, Any]]:
    """Per pool key, each problem's ``pool_n`` samples with token logprobs: the sweep's where
    it kept them, else drawn (and cached) for the problems some setting still needs."""
    pools = load_json(args.pool)
    for key, swept in swept_pools(args).items():
        pools.setdefault(key, {}).update(swept)
    if args.no_draw:
        return pools
    gate = asyncio.Semaphore(args.concurrency)
    todo = [(t, p) for t in args.temperatures for p in problems
            if p.id not in pools.get(pool_key(args, t), {}) and needs_pool(results, args, t, p)]

    async def one(temperature: float, p: Problem) -> None:
        async with gate:
            gen = await engine.generate(GenerationRequest(
                prompt=p.prompt(), n=args.pool_n, temperature=temperature,
                max_tokens=args.max_tokens, seed=derive_seed(args.seed, p.id, temperature),
                logprobs=True, top_logprobs=args.top_logprobs))
        pools.setdefault(pool_key(args, temperature), {})[p.id] = {
            "prompt_tokens": gen.prompt_tokens,
            "samples": [c.model_dump(mode="json") for c in gen.completions]}
        save_json(args.pool, pools)
        bar.advance(task)

    with Progress() as bar:
        task = bar.add_task(f"pools: {len(todo)} x {args.pool_n} samples", total=len(todo))
        await asyncio.gather(*(one(t, p) for t, p in todo))
    return pools


def load_results(args: argparse.Namespace) -> dict[str, Any]:
    """The outcome cache: ``outcomes`` per setting and problem, and ``pools``, the
    fingerprint of the pool each problem's outcomes at a temperature came from."""
    results = load_json(args.results)
    return {"pools": results.get("pools", {}), "outcomes": results.get("outcomes", {})}


def settle_pools(problems: list[Problem], pools: dict[str, Any], results: dict[str, Any],
                 args: argparse.Namespace) -> None:
    """Drop every outcome that came from another pool than the one at hand, so a problem's
    settings at one temperature always replay the same traces."""
    for t in args.temperatures:
        key = pool_key(args, t)
        prints = results["pools"].setdefault(key, {})
        for p in problems:
            pool = pools.get(key, {}).get(p.id)
            if pool is None or prints.get(p.id) == fingerprint(pool):
                continue
            for s in settings(args):
                if s.temperature == t:
                    results["outcomes"].get(s.key, {}).pop(p.id, None)
            prints[p.id] = fingerprint(pool)


async def run_settings(problems: list[Problem], pools: dict[str, Any], engine: EmbeddedBackend,
                       args: argparse.Namespace, results: dict[str, Any]
                       ) -> dict[str, dict[str, dict[str, float]]]:
    """Per setting and problem: correctness and costs (cached in ``--results``)."""
    settle_pools(problems, pools, results, args)
    outcomes = results["outcomes"]
    gate = asyncio.Semaphore(args.concurrency)

    async def one(s: Setting, p: Problem) -> None:
        pool = pools[pool_key(args, s.temperature)][p.id]
        backend = ReplayBackend([Completion.model_validate(c) for c in pool["samples"]],
                                prompt_tokens=pool["prompt_tokens"], live=engine)
        spec = f"{s.spec},temperature={s.temperature:g},max_tokens={args.max_tokens}"
        async with gate:
            result = await solve(p, make_strategy(spec), backend, seed=args.seed, spec=spec)
        u = result.usage
        outcomes.setdefault(s.key, {})[p.id] = {
            "correct": float(is_correct(result.answer, p.reference or "")),
            "generated_tokens": float(u.generated_tokens),
            "total_tokens": float(u.prompt_tokens + u.generated_tokens),
            "flops": float(u.flops), "stopped": float(u.stopped_traces)}
        save_json(args.results, results)
        bar.advance(task)

    todo = [(s, p) for s in settings(args) for p in problems if p.id not in
            outcomes.get(s.key, {})]
    with Progress() as bar:
        task = bar.add_task(f"replay: {len(todo)} runs", total=len(todo))
        for s, p in todo:
            await one(s, p)
    return outcomes


SIGNALS = {"shorter trace": lambda scores: -float(len(scores)),
           "mean confidence": lambda scores: trace_confidence(scores, "mean"),
           "lowest window (32)": lambda scores: trace_confidence(scores, "lowest-window", 32),
           "bottom 10% (32)": lambda scores: trace_confidence(scores, "bottom", 32, 0.1),
           "tail (32)": lambda scores: trace_confidence(scores, "tail", 32)}


def separation(problems: list[Problem], pool: dict[str, Any]) -> dict[str, float]:
    """Per trace signal, the mean over problems of P(a right trace scores above a wrong one);
    a trace cut at ``max_tokens`` with no marked answer is wrong. A diagnostic over all
    problems: nothing is chosen by it."""
    aucs: dict[str, list[float]] = {name: [] for name in SIGNALS}
    for p in problems:
        rows = []
        for c in pool[p.id]["samples"] if p.id in pool else ():
            scores = token_scores(c["logprobs"], c["top_logprobs"])
            answer = extract_answer(c["text"], marked_only=c["finish_reason"] == "length")
            rows.append((is_correct(answer, p.reference),
                         {name: f(scores) for name, f in SIGNALS.items()}))
        right = [r[1] for r in rows if r[0]]
        wrong = [r[1] for r in rows if not r[0]]
        for name in SIGNALS if right and wrong else ():
            wins = [(a[name] > b[name]) + 0.5 * (a[name] == b[name]) for a in right for b in wrong]
            aucs[name].append(sum(wins) / len(wins))
    return {name: float(np.mean(v)) for name, v in aucs.items() if v}


def scores_of(rows: dict[str, dict[str, float]], cost: str = "generated_tokens") -> Scores:
    """One setting's per-problem outcomes as ``Scores`` under ``cost``."""
    out = Scores()
    for pid, r in rows.items():
        out.add(pid, r["correct"], r[cost])
    return out


def pick(candidates: Sequence[Setting], base: Setting, train: Sequence[str],
         results: dict[str, dict[str, dict[str, float]]]) -> Setting:
    """On ``train``: the cheapest setting non-inferior to ``base``, else the most accurate
    (ties to the cheaper)."""
    ref = scores_of(results[base.key])

    def acc(s: Setting) -> float:
        return scores_of(results[s.key]).accuracy(train)

    def cost(s: Setting) -> float:
        return scores_of(results[s.key]).mean_cost(train)

    ok = [s for s in candidates if scores_of(results[s.key]).versus(ref, train).non_inferior]
    if ok:
        return min(ok, key=lambda s: (cost(s), -acc(s)))
    return max(candidates, key=lambda s: (acc(s), -cost(s)))


@dataclass
class Held:
    """Held-out outcomes of one reported row, filled fold by fold, with what each fold ran."""

    rows: dict[str, dict[str, float]]
    picked: list[str]


def crossfit(problems: list[Problem], results: dict[str, dict[str, dict[str, float]]],
             args: argparse.Namespace) -> dict[str, Held]:
    """Every reported row's held-out outcomes: each fold scored by choices made on the
    others."""
    ids = [p.id for p in problems]
    every = settings(args)
    held: dict[str, Held] = {}

    def add(name: str, s: Setting, test: Sequence[str]) -> None:
        row = held.setdefault(name, Held({}, []))
        row.rows.update({pid: results[s.key][pid] for pid in test})
        row.picked.append(s.key)

    for test in assign_folds(ids, args.folds, args.seed):
        train = [pid for pid in ids if pid not in set(test)]
        sc16 = [s for s in every if s.spec == BASELINE]
        base = max(sc16, key=lambda s: scores_of(results[s.key]).accuracy(train))
        add("SC@16", base, test)
        for k_spec in FAMILIES[MAJORITY][:-1]:
            add(f"majority {k_spec.split('=')[1]}", next(s for s in every if s.spec == k_spec
                                                        and s.temperature == base.temperature),
                test)
        efficient = [s for s in every if s.family != MAJORITY]
        for family in [f for f in args.families if f != MAJORITY] + ["best efficient"]:
            options = efficient if family == "best efficient" else \
                [s for s in efficient if s.family == family]
            chosen = pick(options, base, train, results)
            add(family, chosen, test)
            cost = scores_of(results[chosen.key]).mean_cost(train)
            majorities = [s for s in every if s.family == MAJORITY
                          and s.temperature == chosen.temperature]
            matched = min(majorities, key=lambda s: abs(
                scores_of(results[s.key]).mean_cost(train) - cost))
            add(f"{family} | majority@k matched", matched, test)
    return held


def mean(rows: dict[str, dict[str, float]], field: str) -> float:
    """Mean of one field over a row's problems."""
    return float(np.mean([r[field] for r in rows.values()]))


def versus(a: Held, b: Held) -> Paired:
    """Paired held-out difference of accuracy, a - b."""
    ids = sorted(a.rows)
    return paired([a.rows[p]["correct"] for p in ids], [b.rows[p]["correct"] for p in ids])


def report(held: dict[str, Held], n: int, args: argparse.Namespace) -> float:
    """Print the held-out table and the headline; return the last line's share."""
    base = held["SC@16"]
    print(f"GSM8K training problems: {n}, {args.folds} folds (seed {args.seed}), {args.model}, "
          f"pools of {args.pool_n} samples at T in {args.temperatures} (max_tokens "
          f"{args.max_tokens}); every row is held out: chosen on the other folds")
    print(f"{'row':44s} {'acc':>6s} {'gen tok':>8s} {'total tok':>9s} {'TFLOPs':>7s} "
          f"{'vs SC@16':>24s} {'vs matched maj@k':>24s}  chosen per fold")
    for name, row in held.items():
        if name.endswith("matched"):
            continue
        matched = held.get(f"{name} | majority@k matched")
        vs_maj = str(versus(row, matched)) if matched else ""
        print(f"{name:44s} {mean(row.rows, 'correct'):6.3f} "
              f"{mean(row.rows, 'generated_tokens'):8.1f} {mean(row.rows, 'total_tokens'):9.1f} "
              f"{mean(row.rows, 'flops') / 1e12:7.2f} {versus(row, base)!s:>24s} "
              f"{vs_maj:>24s}  {' | '.join(row.picked)}")
        if matched:
            print(f"{'  majority@k at matched tokens':44s} {mean(matched.rows, 'correct'):6.3f} "
                  f"{mean(matched.rows, 'generated_tokens'):8.1f} "
                  f"{mean(matched.rows, 'total_tokens'):9.1f} "
                  f"{mean(matched.rows, 'flops') / 1e12:7.2f} "
                  f"{versus(matched, base)!s:>24s} {'':>24s}  {' | '.join(matched.picked)}")
    best = held["best efficient"]
    diff = versus(best, base)
    shares = {c: mean(best.rows, c) / mean(base.rows, c) for c in COSTS}
    share = shares["generated_tokens"] if diff.non_inferior else 1.0
    print(f"best efficient method (chosen per fold on the others): paired difference against "
          f"SC@16 {diff}; non-inferior (lower end >= -{MARGIN}): {diff.non_inferior}; its share "
          f"of SC@16's total tokens {shares['total_tokens']:.3f}, FLOPs {shares['flops']:.3f}")
    if n < MIN_PROBLEMS:
        print(f"measured share {share:.3f}, but on too few problems for a headline ({n} < "
              f"{MIN_PROBLEMS})")
        print(f"share of SC@16 generated tokens at which the best efficient method is "
              f"non-inferior: 1.000 (no headline: {n} problems < {MIN_PROBLEMS})")
        return 1.0
    print(f"share of SC@16 generated tokens at which the best efficient method is non-inferior:"
          f" {share:.3f} (paired difference {diff}; target <= 0.5: "
          f"{'met' if share <= 0.5 else 'missed'})")
    return share


def plot(held: dict[str, Held], path: Path, n: int) -> None:
    """Held-out accuracy (with its bootstrap interval) against generated tokens per row."""
    stats = []
    for name, row in held.items():
        if name.endswith("matched"):
            continue
        acc = [r["correct"] for r in row.rows.values()]
        family = MAJORITY if name.startswith(("majority", "SC@16")) else name
        stats.append(ConfigStats(config=name, family=family, k=0, backend="", budget=None,
                                 problems=n, mean={"correct": float(np.mean(acc)),
                                 "generated_tokens": mean(row.rows, "generated_tokens")},
                                 ci={"correct": bootstrap_ci(acc, reps=2000)}))
    accuracy_figure(stats, "generated_tokens", f"GSM8K, {n} training problems, held out: "
                    "accuracy against generated tokens", path)
    print(f"plot: {path}")


async def main(args: argparse.Namespace) -> float:
    """Draw (or load) the pools, replay every setting, cross-fit, print the table."""
    problems = Gsm8kTrainTask().problems(limit=args.problems, seed=args.seed)
    engine = EmbeddedBackend(model=args.model, slots=max(args.pool_n * args.concurrency, 8),
                             ctx=max(1024, args.max_tokens + 512), threads=args.threads)
    await engine.ready()
    cache = load_results(args)
    pools = await draw_pools(problems, engine, args, cache)
    ready = [p for p in problems if all(p.id in pools.get(pool_key(args, t), {})
                                        or not needs_pool(cache, args, t, p)
                                        for t in args.temperatures)]
    if len(ready) < len(problems):
        print(f"{len(problems) - len(ready)} of {len(problems)} problems left out: no pool at "
              "hand for them (--no-draw)")
        problems = ready
    results = await run_settings(problems, pools, engine, args, cache)
    await engine.close()
    for t in args.temperatures:
        pool = pools.get(pool_key(args, t), {})
        auc = separation(problems, pool)
        print(f"T={t:g}: how well a trace's signal tells its right from its wrong traces within "
              f"a problem (mean AUC over the {sum(p.id in pool for p in problems)} problems "
              "whose pool is at hand; 0.5 is chance): "
              + ", ".join(f"{k} {v:.3f}" for k, v in auc.items()))
    held = crossfit(problems, results, args)
    share = report(held, len(problems), args)
    if args.plot is not None:
        plot(held, args.plot, len(problems))
    return share


if __name__ == "__main__":
    sys.exit(0 if asyncio.run(main(parse(sys.argv[1:]))) <= 1.0 else 1)
