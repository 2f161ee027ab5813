"""Fit the compute-optimal policy on a sweep and evaluate it on held-out problems.

For every training problem the probe (the first k samples of its sampling pool) gives a
predicted difficulty bin. Every configuration has an expected accuracy and cost given that
probe: sampling configurations (majority, weighted or best-of at k, which reuse the probe's
samples) and early stopping at several batch sizes and thresholds (replayed over orders of
the pool, probe first: :mod:`testtime.eval.stopping`) are scored from the pool without
sampling again; every other strategy the sweep ran (beam, revision, deepconf, ...) counts as
its own record's outcome, its cost plus the probe's. A bin's accuracies are shrunk toward
the all-problem ones (``prior``), as small bins overfit. Per budget (mean cost per problem in
the chosen unit, probe included) the policy picks one configuration per bin to maximise mean
accuracy within the budget (a Lagrangian relaxation of the multiple-choice knapsack).
Evaluation replays the procedure on held-out problems, so no problem used for fitting is
scored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from testtime.eval.curves import (
    SAMPLING,
    Point,
    Pool,
    default_ks,
    problem_key,
    strategy_name,
    subset_mask,
)
from testtime.eval.difficulty import fit_edges, probe_statistic, sampling_records, split
from testtime.eval.stopping import early_stop_choices, replay_early_stop, replays
from testtime.strategies.adaptive import Choice, Policy, Statistic, Unit, sampling_spec
from testtime.strategies.base import make_strategy

COST_FIELDS = ("generated_tokens", "verifier_tokens", "prompt_tokens", "calls", "flops",
               "seconds")
FRACTIONS = (1 / 16, 1 / 8, 3 / 16, 1 / 4, 3 / 8, 1 / 2, 3 / 4, 1)
"""Default budgets: these shares of the largest sampling configuration's mean cost."""
PRIOR = 4.0
"""Pseudo-problems shrinking each bin's accuracies toward the all-problem accuracies."""
COVERAGE = 0.8
"""A strategy enters the choice set when the sweep ran it on this share of the problems."""


@dataclass(frozen=True)
class Instance:
    """One problem under one seed: its sample pool, probe statistic and other strategies' runs."""

    problem: str
    record: dict[str, Any]
    pool: Pool
    statistic: float
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def chars(self) -> int:
        """Length of the question, the cheap prompt feature."""
        return len(self.record.get("question") or "")


def unit_cost(usage: dict[str, float], unit: Unit) -> float:
    """A usage's cost in ``unit``: generated + verifier tokens, FLOPs or seconds."""
    if unit == "tokens":
        return float(usage.get("generated_tokens", 0)) + float(usage.get("verifier_tokens", 0))
    return float(usage.get(unit, 0.0))


def _usage(rec: dict[str, Any]) -> dict[str, float]:
    u = rec.get("usage") or {}
    return {k: float(u.get(k, 0) or 0) for k in COST_FIELDS}


def probe_usage(inst: Instance, probe_k: int) -> dict[str, float]:
    """What the probe's samples cost: their own tokens, the pool's other costs pro rata."""
    cands = inst.record["candidates"]
    u = _usage(inst.record)
    share = probe_k / len(cands)
    out = {k: v * share for k, v in u.items()}
    out["generated_tokens"] = float(sum(c.get("generated_tokens", 0) for c in cands[:probe_k]))
    out["prompt_tokens"] = u["prompt_tokens"]
    return out


def _drawn_usage(inst: Instance, samples: float, generated: float) -> dict[str, float]:
    """Usage of drawing ``samples`` of the pool: their generated tokens, the pool's other
    costs pro rata, the prompt once."""
    u = _usage(inst.record)
    usage = {key: v * samples / len(inst.record["candidates"]) for key, v in u.items()}
    usage["generated_tokens"] = generated
    usage["prompt_tokens"] = u["prompt_tokens"]
    return usage


def outcome(inst: Instance, choice: Choice, probe_k: int, *, limit: int = 256
            ) -> tuple[float, dict[str, float]]:
    """Expected correctness and usage of ``choice`` on ``inst`` after its probe."""
    cands = inst.record["candidates"]
    n = len(cands)
    gens = np.array([float(c.get("generated_tokens", 0)) for c in cands])
    if choice.k:
        k = min(max(choice.k, probe_k), n)
        rng = np.random.default_rng([k, probe_k, len(choice.family)])
        mask = subset_mask(n, k, rng, limit, fixed=probe_k)
        rest_mean = float(np.mean(gens[probe_k:])) if n > probe_k else 0.0
        generated = float(gens[:probe_k].sum()) + (k - probe_k) * rest_mean
        return float(inst.pool.judge(choice.family, mask).mean()), _drawn_usage(inst, k,
                                                                                generated)
    if choice.spec not in inst.runs and replays(choice, inst.record["strategy"], n):
        run = replay_early_stop(inst.pool, gens, choice.strategy(), probe_k)
        return run.accuracy, _drawn_usage(inst, run.samples, run.generated_tokens)
    rec = inst.runs[choice.spec]
    probe = probe_usage(inst, probe_k)
    used = _usage(rec)
    return float(bool(rec.get("correct"))), {k: probe[k] + used[k] for k in COST_FIELDS}


def available(inst: Instance, choice: Choice) -> bool:
    """Whether ``inst`` can score ``choice``: from its pool, or from the strategy's own run."""
    return bool(choice.k) or choice.spec in inst.runs or replays(
        choice, inst.record["strategy"], len(inst.record["candidates"]))


def other_runs(records: Sequence[dict[str, Any]]) -> dict[tuple[str, Any], dict[str, Any]]:
    """Per (problem, seed), the records of strategies that are not sampling or adaptive."""
    out: dict[tuple[str, Any], dict[str, Any]] = {}
    for rec in records:
        name = strategy_name(rec["strategy"])
        if name in SAMPLING or name == "adaptive" or rec.get("error"):
            continue
        out.setdefault((problem_key(rec), rec.get("seed")), {})[rec["strategy"]] = rec
    return out


def instances(records: Sequence[dict[str, Any]], problems: Sequence[str], probe_k: int,
              statistic: str) -> list[Instance]:
    """The sample pools of ``problems`` (one per seed) with the other strategies' runs."""
    pools = sampling_records(records)
    runs = other_runs(records)
    out = []
    for prob in problems:
        for rec in pools.get(prob, []):
            out.append(Instance(prob, rec, Pool.of(rec["candidates"]),
                                probe_statistic(rec["candidates"], probe_k, statistic),
                                runs.get((prob, rec.get("seed")), {})))
    return out


def choices(insts: Sequence[Instance], probe_k: int) -> list[Choice]:
    """Every configuration a policy may pick: sampling at each k ≥ probe_k, plus each other
    strategy the sweep ran on (nearly) every problem."""
    n = min(len(i.record["candidates"]) for i in insts)
    source = insts[0].record["strategy"]
    scored = all(i.pool.scored for i in insts)
    fams = ("majority", "weighted", "best-of") if scored else ("majority",)
    out = [Choice(spec=sampling_spec(source, f, k)) for f in fams for k in default_ks(n)
           if k >= probe_k]
    out += early_stop_choices(source, n)
    counts: dict[str, int] = {}
    for inst in insts:
        for spec in inst.runs:
            counts[spec] = counts.get(spec, 0) + 1
    out += [Choice(spec=s) for s, c in sorted(counts.items()) if c >= COVERAGE * len(insts)]
    return out


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
               unit: Unit = "tokens", holdout: float = 0.5, seed: int = 0,
               feature: Literal["prompt_chars"] | None = None, prior: float = PRIOR,
               source: str = "") -> Policy:
    """Fit a Policy on the training split of a sweep's records, across strategy families.

    With ``feature="prompt_chars"`` every probe bin is split at the training problems' median
    question length (when they differ). A bin's accuracy per configuration is shrunk toward
    that configuration's accuracy over all training problems as if ``prior`` more problems had
    scored it, so a small bin cannot crown a configuration on a few lucky problems.
    """
    pools = sampling_records(records)
    if not pools:
        raise ValueError("the store has no sampling records (self-consistency, weighted-vote "
                         "or best-of-n) to fit a policy on: the probe needs a sampled pool")
    n = min(len(r["candidates"]) for rs in pools.values() for r in rs)
    if probe_k >= n:
        raise ValueError(f"probe_k={probe_k} must be below the sweep's samples per problem ({n})")
    train, held = split(sorted(pools), holdout, seed)
    if not train or not held:
        raise ValueError(f"{len(pools)} problems are too few to split into train and held-out")
    insts = instances(records, train, probe_k, statistic)
    opts = choices(insts, probe_k)
    insts = [i for i in insts if all(available(i, c) for c in opts)]
    if statistic == "score" and not all(i.pool.scored for i in insts):
        raise ValueError("statistic 'score' needs a verifier's scores on the sampling pool")
    edges = fit_edges([i.statistic for i in insts], bins)
    lengths = [i.chars for i in insts]
    cut = float(np.median(lengths)) if feature and min(lengths) < max(lengths) else None
    settings = make_strategy(insts[0].record["strategy"])
    proto = Policy(probe_k=probe_k, statistic=statistic, edges=edges, unit=unit, budgets={},
                   feature=feature if cut is not None else None, feature_cut=cut,
                   train=train, heldout=held, temperature=settings.temperature,
                   max_tokens=settings.max_tokens,
                   verifier=settings.verifier or insts[0].record.get("verifier"), source=source)
    by_bin: dict[int, list[Instance]] = {b: [] for b in range(1, proto.bins + 1)}
    for inst in insts:
        by_bin[proto.predict(inst.statistic, inst.chars)].append(inst)
    scored = {id(i): {ch: outcome(i, ch, probe_k) for ch in opts} for i in insts}
    overall = {ch: float(np.mean([scored[id(i)][ch][0] for i in insts])) for ch in opts}
    table: dict[int, dict[Choice, tuple[float, float]]] = {}
    for b, members in by_bin.items():
        pool = members or insts  # an empty bin falls back to all training problems
        table[b] = {}
        for ch in opts:
            vals = [scored[id(i)][ch] for i in pool]
            acc = (sum(v[0] for v in vals) + prior * overall[ch]) / (len(vals) + prior)
            table[b][ch] = (acc, float(np.mean([unit_cost(v[1], unit) for v in vals])))
    weights = {b: len(m) / len(insts) for b, m in by_bin.items()}
    if budgets is None:
        full = max((c for c in opts if c.k), key=lambda c: (c.k, c.family == "majority"))
        top = float(np.mean([unit_cost(outcome(i, full, probe_k)[1], unit) for i in insts]))
        budgets = sorted({_round(top * f) for f in FRACTIONS})
    rows = {}
    for budget in sorted(budgets):
        pick = allocate(table, weights, float(budget))
        rows[_key(budget)] = [pick[b] for b in range(1, proto.bins + 1)]
    summary = {str(b): {c.label: [round(a, 4), round(cost, 6 if unit != "tokens" else 1),
                                  len(by_bin[b])] for c, (a, cost) in row.items()}
               for b, row in table.items()}
    return proto.model_copy(update={"budgets": rows, "table": summary})


def _round(x: float) -> float:
    return float(round(x)) if x >= 10 else float(f"{x:.3g}")


def _key(budget: float) -> str:
    return str(int(budget)) if float(budget).is_integer() else f"{budget:g}"


def simulate(policy: Policy, records: Sequence[dict[str, Any]], problems: Sequence[str],
             budget: str) -> list[Point]:
    """Points of the adaptive strategy under ``budget`` on ``problems``, replayed from records.

    A problem lacking the record of the configuration chosen for it is left out.
    """
    out = []
    for inst in instances(records, problems, policy.probe_k, policy.statistic):
        choice = policy.budgets[budget][policy.predict(inst.statistic, inst.chars) - 1]
        if not available(inst, choice):
            continue
        correct, u = outcome(inst, choice, policy.probe_k)
        rec = inst.record
        out.append(Point(problem=inst.problem, config=f"adaptive@{budget}", family="adaptive",
                         k=choice.k, correct=correct, generated_tokens=u["generated_tokens"],
                         prompt_tokens=u["prompt_tokens"], verifier_tokens=u["verifier_tokens"],
                         calls=u["calls"], flops=u["flops"], seconds=u["seconds"],
                         seed=int(rec.get("seed") or 0), backend=rec.get("backend") or "",
                         budget=rec.get("budget"), derived=True))
    return out
