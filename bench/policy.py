"""Compute-optimal policy across strategy families against self-consistency@16, held out.

Runs (or resumes) the sweep of examples/policy-sweep.yaml: the embedded 0.5B model on
arithmetic levels 1-5 under sampling (one n=16 pool scored by the model's confidence), early
stopping, beam search with the confidence verifier and revision. Fits the policy on half of
the problems and replays it on the other half. The last line is the share of SC@16's generated
tokens the policy needs on the held-out problems to reach SC@16's held-out accuracy
(Snell et al.'s 4x is a share of 0.25).

    PYTHONPATH=src nice -n 10 python bench/policy.py            # sweep (resumes), then fit
    PYTHONPATH=src python bench/policy.py --no-sweep              # fit what the store holds
    PYTHONPATH=src python bench/policy.py --report out/policy     # also write the HTML report
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import numpy as np

from testtime.eval.curves import derived_points, problem_key
from testtime.eval.policy import fit_policy, simulate
from testtime.eval.report import build_report, describe_bins
from testtime.eval.store import ResultStore
from testtime.eval.sweep import load_config, run_sweep

SHARES = np.geomspace(1 / 64, 1.0, 40)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="examples/policy-sweep.yaml")
    ap.add_argument("--store", default=None, help="result store (default: the config's)")
    ap.add_argument("--no-sweep", action="store_true", help="fit what the store holds")
    ap.add_argument("--probe-k", type=int, default=2)
    ap.add_argument("--bins", type=int, default=3)
    ap.add_argument("--report", type=Path, default=None, help="also write the report here")
    args = ap.parse_args()
    cfg = load_config(args.config)
    store = ResultStore(args.store or cfg.store)
    if not args.no_sweep:
        summary = asyncio.run(run_sweep(cfg, store=store))
        print(f"sweep: {summary.total} units, {summary.skipped} already stored, "
              f"{summary.written} run now, {summary.errors} failed")
    records = store.records()
    store.close()
    pools = [r for r in records if r["strategy"] == cfg.strategies[0]]
    print(f"store: {len(records)} records, {len(pools)} problems with a sampling pool "
          f"(config asks for {sum(t.limit for t in cfg.tasks)})")
    sc_full = [p for p in derived_points(records, ks=[16]) if p.config == "majority@16"]
    try:
        if not sc_full:
            raise ValueError("no 16-sample pool is stored yet")
        sc_tokens = float(np.mean([p.generated_tokens for p in sc_full]))
        levels = sorted({round(sc_tokens * s) for s in SHARES})
        policy = fit_policy(records, probe_k=args.probe_k, bins=args.bins, budgets=levels,
                            source=str(args.store or cfg.store))
    except ValueError as exc:
        print(f"cannot fit yet: {exc}; resume the sweep: PYTHONPATH=src nice -n 10 python "
              f"bench/policy.py --config {args.config}")
        print("share of SC@16 tokens to reach its held-out accuracy: not measured")
        return
    have: dict[str, set[str]] = {}
    for r in records:
        have.setdefault(problem_key(r), set()).add(r["strategy"])
    held = {p for p in policy.heldout if have.get(p, set()) >= set(cfg.strategies)}
    sc_held = [p for p in sc_full if p.problem in held]
    sc_acc = float(np.mean([p.correct for p in sc_held]))
    sc_tok = float(np.mean([p.generated_tokens for p in sc_held]))
    print(f"fitted on {len(policy.train)} problems, held out {len(policy.heldout)} "
          f"({len(held)} with every strategy run, compared below); "
          f"{describe_bins(policy)}")
    rows = []
    for budget in policy.budgets:
        pts = simulate(policy, records, sorted(held), budget)
        if len(pts) < len(sc_held):
            continue  # a chosen strategy lacks records for some held-out problem
        rows.append((budget, float(np.mean([p.correct for p in pts])),
                     float(np.mean([p.generated_tokens for p in pts]))))
    print(f"{'budget':>8} {'choices per bin (easy → hard)':<70} {'acc':>6} {'gen tok':>8} "
          f"{'share':>6}")
    shown = set()
    for budget, acc, tok in rows:
        picks = ", ".join(c.label for c in policy.budgets[budget])
        if picks in shown:
            continue
        shown.add(picks)
        print(f"{budget:>8} {picks[:70]:<70} {acc:6.3f} {tok:8.0f} {tok / sc_tok:6.3f}")
    reach = [(b, a, t) for b, a, t in rows if a >= sc_acc - 1e-9]
    if args.report is not None:
        build_report(records, args.report, title="policy across families: arith, qwen 0.5B",
                     policy=policy)
        print(f"report: {args.report / 'report.html'}")
    print(f"held-out SC@16: accuracy {sc_acc:.3f}, {sc_tok:.0f} generated tokens per problem "
          f"({len(sc_held)} problems)")
    if not reach:
        best = max(rows, key=lambda r: r[1]) if rows else None
        if best:
            print(f"adaptive never reached SC@16's accuracy; best {best[1]:.3f} at "
                  f"{best[2]:.0f} tokens")
        print("share of SC@16 tokens to reach its held-out accuracy: not reached")
        return
    budget, acc, tok = min(reach, key=lambda r: r[2])
    print(f"held-out adaptive@{budget}: accuracy {acc:.3f}, {tok:.0f} generated tokens per "
          f"problem")
    print(f"share of SC@16 tokens to reach its held-out accuracy: {tok / sc_tok:.3f}")


if __name__ == "__main__":
    main()
