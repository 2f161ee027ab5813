"""Fit the compute-optimal policy on a sweep's samples and evaluate it on held-out problems.

For every training problem the probe (the first k samples) gives a predicted difficulty bin;
every configuration (majority, weighted or best-of over k samples that reuse the probe) has an
expected accuracy and cost given that probe. Per budget (mean generated tokens per problem,
probe included) the policy picks one configuration per bin to maximise mean accuracy within
the budget (a Lagrangian relaxation of the multiple-choice knapsack). Evaluation replays the
same procedure on held-out problems, so no problem used for fitting is scored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from testtime.eval.curves import Point, Pool, default_ks, direct_point, subset_mask
from testtime.eval.difficulty import fit_edges, probe_statistic, sampling_records, split
from testtime.strategies.adaptive import Choice, Family, Policy, Statistic
from testtime.strategies.base import make_strategy

FAMILIES: tuple[Family, ...] = ("majority", "weighted", "best-of")


@dataclass(frozen=True)
class Instance:
    """One problem's sample pool under one seed, with its probe statistic."""

    problem: str
    record: dict[str, Any]
    pool: Pool
    statistic: float


def conditional(inst: Instance, choice: Choice, probe_k: int, *, limit: int = 256
                ) -> tuple[float, float]:
    """Expected (correctness, generated tokens) of ``choice`` given the probe's samples."""
    cands = inst.record["candidates"]
    n = len(cands)
    k = max(choice.k, probe_k)
    rng = np.random.default_rng([k, probe_k, len(choice.family)])
    mask = subset_mask(n, k, rng, limit, fixed=probe_k)
    gens = [c.get("generated_tokens", 0) for c in cands]
    rest_mean = float(np.mean(gens[probe_k:])) if n > probe_k else 0.0
    tokens = sum(gens[:probe_k]) + (k - probe_k) * rest_mean
    return float(inst.pool.judge(choice.family, mask).mean()), tokens


def instances(records: Sequence[dict[str, Any]], problems: Sequence[str], probe_k: int,
              statistic: str) -> list[Instance]:
    """The sample pools of ``problems`` (one per seed)."""
    pools = sampling_records(records)
    out = []
    for prob in problems:
        for rec in pools.get(prob, []):
            out.append(Instance(prob, rec, Pool.of(rec["candidates"]),
                                probe_statistic(rec["candidates"], probe_k, statistic)))
    return out


def choices(n: int, probe_k: int, scored: bool) -> list[Choice]:
    """Every configuration a policy may pick with at most n samples."""
    fams: tuple[Family, ...] = FAMILIES if scored else ("majority",)
    return [Choice(family=f, k=k) for f in fams for k in default_ks(n) if k >= probe_k]


def allocate(table: dict[int, dict[Choice, tuple[float, float]]], weights: dict[int, float],
             budget: float) -> dict[int, Choice]:
    """Per bin, the choice maximising weighted accuracy with weighted cost within budget."""
    best: tuple[float, float, dict[int, Choice]] | None = None
    costs = [c for row in table.values() for _, c in row.values()]
    top = 1.0 / max(min((c for c in costs if c > 0), default=1.0), 1e-9)
    for lam in [0.0, *np.geomspace(top * 1e-4, top, 300)]:
        pick = {b: max(row, key=lambda ch: (row[ch][0] - lam * row[ch][1], -row[ch][1]))
                for b, row in table.items()}
        acc = sum(weights[b] * table[b][c][0] for b, c in pick.items())
        cost = sum(weights[b] * table[b][c][1] for b, c in pick.items())
        if cost <= budget and (best is None or (acc, -cost) > (best[0], -best[1])):
            best = (acc, cost, pick)
    if best is None:  # nothing fits: the cheapest choice everywhere
        return {b: min(row, key=lambda ch: row[ch][1]) for b, row in table.items()}
    return best[2]


def fit_policy(records: Sequence[dict[str, Any]], *, probe_k: int = 2, bins: int = 3,
               statistic: Statistic = "agreement", budgets: Sequence[float] | None = None,
               holdout: float = 0.5, seed: int = 0, source: str = "") -> Policy:
    """Fit a Policy on the training split of a sweep's sampling records."""
    pools = sampling_records(records)
    if not pools:
        raise ValueError("the store has no sampling records (self-consistency, weighted-vote "
                         "or best-of-n) to fit a policy on")
    n = min(len(r["candidates"]) for rs in pools.values() for r in rs)
    if probe_k >= n:
        raise ValueError(f"probe_k={probe_k} must be below the sweep's samples per problem ({n})")
    train, held = split(sorted(pools), holdout, seed)
    if not train or not held:
        raise ValueError(f"{len(pools)} problems are too few to split into train and held-out")
    insts = [i for i in instances(records, train, probe_k, statistic)]
    scored = all(i.pool.scored for i in insts)
    edges = fit_edges([i.statistic for i in insts], bins)
    source_spec = insts[0].record["strategy"]
    settings = make_strategy(source_spec)
    proto = Policy(probe_k=probe_k, statistic=statistic, edges=edges, budgets={}, train=train,
                   heldout=held, temperature=settings.temperature, max_tokens=settings.max_tokens,
                   verifier=settings.verifier or insts[0].record.get("verifier"), source=source)
    opts = choices(n, probe_k, scored)
    by_bin: dict[int, list[Instance]] = {b: [] for b in range(1, proto.bins + 1)}
    for inst in insts:
        by_bin[proto.predict(inst.statistic)].append(inst)
    table: dict[int, dict[Choice, tuple[float, float]]] = {}
    for b, members in by_bin.items():
        pool = members or insts  # an empty bin falls back to all training problems
        table[b] = {}
        for ch in opts:
            vals = [conditional(i, ch, probe_k) for i in pool]
            table[b][ch] = (float(np.mean([v[0] for v in vals])),
                            float(np.mean([v[1] for v in vals])))
    weights = {b: len(m) / len(insts) for b, m in by_bin.items()}
    full = max(opts, key=lambda c: c.k).k
    per_sample = float(np.mean([c.get("generated_tokens", 0) for i in insts
                                for c in i.record["candidates"]]))
    if budgets is None:
        budgets = sorted({round(per_sample * full * f) for f in (1 / 8, 1 / 4, 1 / 2, 3 / 4, 1)})
    rows = {}
    for budget in sorted(budgets):
        pick = allocate(table, weights, float(budget))
        rows[str(int(budget))] = [pick[b] for b in range(1, proto.bins + 1)]
    return proto.model_copy(update={"budgets": rows})


def simulate(policy: Policy, records: Sequence[dict[str, Any]], problems: Sequence[str],
             budget: str) -> list[Point]:
    """Points of the adaptive strategy under ``budget`` on ``problems``, replayed from samples."""
    out = []
    for inst in instances(records, problems, policy.probe_k, policy.statistic):
        choice = policy.budgets[budget][policy.predict(inst.statistic) - 1]
        correct, tokens = conditional(inst, choice, policy.probe_k)
        base = direct_point(inst.record)
        total = sum(c.get("generated_tokens", 0) for c in inst.record["candidates"]) or 1
        frac = tokens / total
        out.append(Point(problem=inst.problem, config=f"adaptive@{budget}", family="adaptive",
                         k=choice.k, correct=correct, generated_tokens=tokens,
                         prompt_tokens=base.prompt_tokens, cached_tokens=base.cached_tokens,
                         verifier_tokens=base.verifier_tokens * frac, calls=base.calls,
                         flops=base.flops * frac, memory_bytes=base.memory_bytes * frac,
                         seconds=base.seconds * frac, seed=base.seed, backend=base.backend,
                         budget=base.budget, derived=True))
    return out
