"""Compute-optimal policy across strategy families against self-consistency@16, held out.

Runs (or resumes) the sweep of examples/policy-sweep.yaml: the embedded 0.5B model on
arithmetic levels 1-5 under sampling (one n=16 pool scored by the model's confidence),
no-thinking answers (an n=16 pool), greedy decoding, early stopping, beam search with the
confidence verifier and revision. Fits the policy on half of the problems (agreement of two
no-thinking answers, the cheapest pool, split by question length, as the shipped policy) and
replays it on the other half; repeats that on other splits, prints each strategy as run on
the same problems, and what a clairvoyant per-problem choice would need (the bound on any
difficulty predictor). The last line is the share of SC@16's generated tokens the policy
needs on the held-out problems to reach SC@16's held-out accuracy (Snell et al.'s 4x is a
share of 0.25).

    PYTHONPATH=src nice -n 10 python bench/policy.py            # sweep (resumes), then fit
    PYTHONPATH=src python bench/policy.py --no-sweep --store examples/policy-sweep.db
    PYTHONPATH=src python bench/policy.py --report out/policy     # also write the HTML report
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from testtime.eval.curves import Point, derived_points, direct_point, problem_key
from testtime.eval.policy import (
    PRIOR,
    allocate,
    available,
    choices,
    fit_policy,
    instances,
    outcome,
    simulate,
    unit_cost,
)
from testtime.eval.report import build_report, describe_bins
from testtime.eval.store import ResultStore
from testtime.eval.sweep import load_config, run_sweep
from testtime.policy import Choice, Policy, distinct_labels, draw_spec

SHARES = np.geomspace(1 / 64, 1.0, 40)


def oracle_tokens(records: list[dict], problems: list[str], policy: Policy,
                  accuracy: float) -> float | None:
    """Mean tokens a per-problem oracle (each problem its own bin, fitted on itself, after the
    same probe) needs to reach ``accuracy``: the bound on what any prediction of difficulty
    could save."""
    probe_k = policy.probe_k
    insts = instances(records, problems, probe_k, "agreement", draw_spec(policy.prober_spec))
    opts = choices(insts, probe_k)
    table = {j: {c: (lambda o: (o[0], unit_cost(o[1], "tokens")))(outcome(i, c, probe_k))
                 for c in opts if available(i, c)} for j, i in enumerate(insts)}
    weights = {j: 1 / len(insts) for j in table}
    def reached(budget: float) -> tuple[bool, float]:
        pick = allocate(table, weights, budget)
        acc = sum(weights[j] * table[j][c][0] for j, c in pick.items())
        return acc >= accuracy - 1e-9, sum(weights[j] * table[j][c][1] for j, c in pick.items())

    low, high = 0.0, max(cost for row in table.values() for _, cost in row.values())
    if not reached(high)[0]:
        return None
    for _ in range(30):
        mid = (low + high) / 2
        low, high = (low, mid) if reached(mid)[0] else (mid, high)
    return reached(high)[1]


def fixed_runs(records: list[dict], strategies: list[str], problems: list[str]
               ) -> list[tuple[str, float, float]]:
    """(spec, accuracy, generated tokens per problem) of each strategy as the sweep ran it."""
    held = set(problems)
    out = []
    for spec in strategies:
        pts = [direct_point(r) for r in records
               if r["strategy"] == spec and problem_key(r) in held]
        if pts:
            out.append((spec, float(np.mean([p.correct for p in pts])),
                        float(np.mean([p.generated_tokens for p in pts]))))
    return out


def by_level(records: list[dict], points: list[Point]) -> str:
    """Accuracy per task level (the generated arith tasks' ``level``) of each config in
    ``points``, over every problem of the sweep."""
    level = {problem_key(r): (r.get("metadata") or {}).get("level") for r in records}
    hits: dict[str, dict[object, list[float]]] = {}
    for p in points:
        hits.setdefault(p.config, {}).setdefault(level.get(p.problem), []).append(p.correct)
    return "; ".join(
        f"{config} " + " ".join(f"{np.mean(v):.2f}" for _, v in sorted(
            levels.items(), key=lambda kv: str(kv[0])))
        for config, levels in hits.items())


@dataclass
class Measured:
    """A policy fitted on one split and its held-out curve beside SC@16's held-out figures."""

    policy: Policy
    held: list[str]
    rows: list[tuple[str, float, float]]
    sc_acc: float
    sc_tok: float

    def reached(self) -> tuple[str, float, float] | None:
        """The cheapest (budget, accuracy, tokens) row reaching SC@16's accuracy, if any."""
        reach = [r for r in self.rows if r[1] >= self.sc_acc - 1e-9]
        return min(reach, key=lambda r: r[2]) if reach else None

    def share(self) -> float | None:
        """Share of SC@16's tokens the cheapest budget reaching its accuracy spends."""
        row = self.reached()
        return row[2] / self.sc_tok if row else None


@dataclass
class Sweep:
    """What every split compares against: SC@16 per problem, the problems that ran every
    strategy of the sweep, and the budgets (shares of SC@16's mean tokens)."""

    records: list[dict]
    sc_full: list[Point]
    complete: set[str]
    levels: list[float]

    @classmethod
    def of(cls, records: list[dict], strategies: list[str]) -> Sweep:
        """ValueError if there is nothing to fit yet."""
        sc_full = [p for p in derived_points(records, ks=[16]) if p.config == "majority@16"]
        if not sc_full:
            raise ValueError("no 16-sample pool is stored yet")
        have: dict[str, set[str]] = {}
        for r in records:
            have.setdefault(problem_key(r), set()).add(r["strategy"])
        sc_tokens = float(np.mean([p.generated_tokens for p in sc_full]))
        return cls(records, sc_full, {p for p, s in have.items() if s >= set(strategies)},
                   sorted({round(sc_tokens * s) for s in SHARES}))


def measure(sweep: Sweep, args: argparse.Namespace, seed: int, source: str) -> Measured:
    """Fit on split ``seed`` and replay every budget on its held-out problems that ran every
    strategy of the sweep."""
    records = sweep.records
    policy = fit_policy(records, probe_k=args.probe_k, bins=args.bins, budgets=sweep.levels,
                        feature="prompt_chars" if args.prompt_length else None,
                        prior=args.prior, probe=args.probe, seed=seed, source=source)
    held = sorted(p for p in policy.heldout if p in sweep.complete)
    sc_held = [p for p in sweep.sc_full if p.problem in held]
    rows = []
    for budget in policy.budgets:
        pts = simulate(policy, records, held, budget)
        if len(pts) < len(sc_held):
            continue  # a chosen strategy lacks records for some held-out problem
        rows.append((budget, float(np.mean([p.correct for p in pts])),
                     float(np.mean([p.generated_tokens for p in pts]))))
    return Measured(policy, held, rows, float(np.mean([p.correct for p in sc_held])),
                    float(np.mean([p.generated_tokens for p in sc_held])))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="examples/policy-sweep.yaml")
    ap.add_argument("--store", default=None, help="result store (default: the config's)")
    ap.add_argument("--no-sweep", action="store_true", help="fit what the store holds")
    ap.add_argument("--probe-k", type=int, default=2)
    ap.add_argument("--bins", type=int, default=3)
    ap.add_argument("--probe", default=None,
                    help="spec the probe draws like (default: the cheapest pool, no-thinking)")
    ap.add_argument("--prompt-length", action=argparse.BooleanOptionalAction, default=True,
                    help="also split every bin by question length (as the shipped policy)")
    ap.add_argument("--prior", type=float, default=PRIOR,
                    help="pseudo-problems shrinking each bin toward all problems")
    ap.add_argument("--splits", type=int, default=5,
                    help="also fit and replay this many train/held-out splits (seeds 1..N-1)")
    ap.add_argument("--report", type=Path, default=None, help="also write the report here")
    args = ap.parse_args()
    cfg = load_config(args.config)
    source = str(args.store or cfg.store)
    store = ResultStore(source)
    if not args.no_sweep:
        summary = asyncio.run(run_sweep(cfg, store=store))
        print(f"sweep: {summary.total} units, {summary.skipped} already stored, "
              f"{summary.written} run now, {summary.errors} failed")
    records = store.records()
    store.close()
    pools = [r for r in records if r["strategy"] == cfg.strategies[0]]
    print(f"store: {len(records)} records, {len(pools)} problems with a sampling pool "
          f"(config asks for {sum(t.limit for t in cfg.tasks)})")
    try:
        sweep = Sweep.of(records, cfg.strategies)
        m = measure(sweep, args, 0, source)
    except ValueError as exc:
        print(f"cannot fit yet: {exc}; resume the sweep: PYTHONPATH=src nice -n 10 python "
              f"bench/policy.py --config {args.config}")
        print("share of SC@16 tokens to reach its held-out accuracy: not measured")
        return
    policy = m.policy
    print(f"fitted on {len(policy.train)} problems, held out {len(policy.heldout)} "
          f"({len(m.held)} with every strategy run, compared below); {describe_bins(policy)}")
    names: dict[str, str] = {}
    table: list[tuple[str, str, float, float]] = []
    for budget, acc, tok in m.rows:
        picks = " ".join(names.setdefault(c.spec, f"[{len(names) + 1}]")
                         for c in policy.budgets[budget])
        if not table or table[-1][1] != picks:
            table.append((budget, picks, acc, tok))
    shown = distinct_labels(Choice(spec=spec) for spec in names)
    print("configurations: " + "; ".join(f"{n} {shown[Choice(spec=spec)]}"
                                         for spec, n in names.items()))
    width = max(len("per bin (easy → hard)"), *(len(t[1]) for t in table))
    print(f"{'budget':>8} {'per bin (easy → hard)':<{width}} {'acc':>6} {'gen tok':>8} "
          f"{'share':>6}")
    for budget, picks, acc, tok in table:
        print(f"{budget:>8} {picks:<{width}} {acc:6.3f} {tok:8.0f} {tok / m.sc_tok:6.3f}")
    if args.report is not None:
        build_report(records, args.report, title="policy across families: arith, qwen 0.5B",
                     policy=policy)
        print(f"report: {args.report / 'report.html'}")
    others = [measure(sweep, args, seed, source) for seed in range(1, args.splits)]
    if others:
        shares = [o.share() for o in others]
        print(f"other splits (seeds 1-{args.splits - 1}): SC@16's held-out accuracy reached at "
              "shares " + ", ".join("not reached" if s is None else f"{s:.3f}" for s in shares)
              + "; best accuracy (share) " + ", ".join(
                  f"{a:.3f} of {o.sc_acc:.3f} ({t / o.sc_tok:.3f})" for o in others
                  for _, a, t in [max(o.rows, key=lambda r: (r[1], -r[2]))]))
    print(f"held-out SC@16: accuracy {m.sc_acc:.3f}, {m.sc_tok:.0f} generated tokens per problem "
          f"({len(m.held)} problems)")
    print("each strategy of the sweep as run, on the same problems: accuracy (share): " + "; ".join(
        f"{spec} {acc:.3f} ({tok / m.sc_tok:.3f})"
        for spec, acc, tok in fixed_runs(records, cfg.strategies, m.held)))
    runs = [direct_point(r) for r in records if r["strategy"] in cfg.strategies]
    print("accuracy by level 1-5 on all problems: " + by_level(records, [*sweep.sc_full, *runs]))
    oracle = oracle_tokens(records, m.held, policy, m.sc_acc)
    print("a clairvoyant choice per held-out problem over the same configurations reaches it "
          "with " + (f"{oracle:.0f} tokens (share {oracle / m.sc_tok:.3f})" if oracle else
                     "no budget"))
    reached = m.reached()
    if reached is None:
        best = max(m.rows, key=lambda r: r[1]) if m.rows else None
        if best:
            print(f"adaptive never reached SC@16's accuracy; best {best[1]:.3f} at "
                  f"{best[2]:.0f} tokens")
        print("share of SC@16 tokens to reach its held-out accuracy: not reached")
        return
    budget, acc, tok = reached
    print(f"held-out adaptive@{budget}: accuracy {acc:.3f}, {tok:.0f} generated tokens per "
          f"problem")
    print(f"share of SC@16 tokens to reach its held-out accuracy: {tok / m.sc_tok:.3f}")


if __name__ == "__main__":
    main()
