"""Fit the compute-optimal policy on a sweep and evaluate it on held-out problems.

For every training problem the probe (the first k samples of one of its sample pools, by
default the pool with the cheapest samples: no-thinking answers when the sweep has them)
gives a predicted difficulty bin. Every configuration has an expected accuracy and cost given
that probe: each pool's vote families at k (majority, weighted or best-of from a sampling
pool, no-thinking@k from a no-thinking pool; the probe's pool reuses the probe's samples) and
early stopping at several batch sizes and thresholds (replayed over orders of a sampling pool,
probe first when it is the probe's: :mod:`testtime.eval.stopping`) are scored without sampling
again; every other strategy the sweep ran (greedy decoding, beam, revision, deepconf, ...)
counts as its own record's outcome, its cost plus the probe's. A bin's accuracies are shrunk toward
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
    Point,
    Pool,
    default_ks,
    problem_key,
    strategy_name,
    subset_mask,
)
from testtime.eval.difficulty import fit_edges, probe_statistic, split
from testtime.eval.stopping import early_stop_choices, replay_early_stop, replays
from testtime.policy import (
    POLICY_STRATEGY,
    Choice,
    Policy,
    Statistic,
    Unit,
    distinct_labels,
    draw_spec,
    pools,
    probe_draw,
    sampling_spec,
)
from testtime.strategies.base import make_strategy

COST_FIELDS = ("generated_tokens", "verifier_tokens", "prompt_tokens", "calls", "flops",
               "seconds")
FRACTIONS = (1 / 64, 1 / 32, 1 / 16, 1 / 8, 3 / 16, 1 / 4, 3 / 8, 1 / 2, 3 / 4, 1)
"""Default budgets: these shares of the largest sampling configuration's mean cost."""
PRIOR = 4.0
"""Pseudo-problems shrinking each bin's accuracies toward the all-problem accuracies."""
COVERAGE = 0.8
"""A strategy enters the choice set when the sweep ran it on this share of the problems."""


@dataclass(frozen=True)
class Drawn:
    """A problem's pool from one way of drawing samples: its record, answers and tokens."""

    record: dict[str, Any]
    pool: Pool

    @property
    def n(self) -> int:
        """Samples in the pool."""
        return self.pool.n

    @property
    def generated(self) -> np.ndarray:
        """Generated tokens of each sample."""
        return np.array([float(c.get("generated_tokens", 0)) for c in self.record["candidates"]])


@dataclass(frozen=True)
class Instance:
    """One problem under one seed: its pools by draw spec (the probe's among them), the probe
    statistic and the other strategies' runs."""

    problem: str
    pools: dict[str, Drawn]
    probe: str
    statistic: float
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def probed(self) -> Drawn:
        """The pool the probe's samples come from."""
        return self.pools[self.probe]

    @property
    def record(self) -> dict[str, Any]:
        """The probe pool's record (question, seed, backend)."""
        return self.probed.record

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
    drawn = inst.probed
    return _drawn_usage(drawn, probe_k, float(drawn.generated[:probe_k].sum()))


def _drawn_usage(drawn: Drawn, samples: float, generated: float) -> dict[str, float]:
    """Usage of drawing ``samples`` of a pool: their generated tokens, the pool's other
    costs pro rata, the prompt once."""
    u = _usage(drawn.record)
    usage = {key: v * samples / drawn.n for key, v in u.items()}
    usage["generated_tokens"] = generated
    usage["prompt_tokens"] = u["prompt_tokens"]
    return usage


def _plus(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: a[k] + b[k] for k in COST_FIELDS}


def _replayed_from(inst: Instance, choice: Choice) -> str | None:
    """The draw spec of the pool ``choice`` is replayed from, if it is an early stop that one
    of the problem's pools replays."""
    return next((d for d, drawn in inst.pools.items()
                 if replays(choice, drawn.record["strategy"], drawn.n)), None)


def outcome(inst: Instance, choice: Choice, probe_k: int, *, limit: int = 256
            ) -> tuple[float, dict[str, float]]:
    """Expected correctness and usage of ``choice`` on ``inst`` after its probe.

    A configuration drawing like the probe reuses the probe's samples; any other pays the probe
    and its own draws."""
    probe = probe_usage(inst, probe_k)
    if choice.k:
        draw = choice.draw or ""
        drawn = inst.pools[draw]
        fixed = probe_k if draw == inst.probe else 0
        k = min(max(choice.k, fixed), drawn.n)
        rng = np.random.default_rng([k, fixed, len(choice.family)])
        mask = subset_mask(drawn.n, k, rng, limit, fixed=fixed)
        gens = drawn.generated
        rest_mean = float(np.mean(gens[fixed:])) if drawn.n > fixed else 0.0
        usage = _drawn_usage(drawn, k, float(gens[:fixed].sum()) + (k - fixed) * rest_mean)
        accuracy = float(drawn.pool.judge(choice.family, mask).mean())
        return accuracy, usage if fixed else _plus(probe, usage)
    source = None if choice.spec in inst.runs else _replayed_from(inst, choice)
    if source is not None:
        drawn = inst.pools[source]
        fixed = probe_k if source == inst.probe else 0
        run = replay_early_stop(drawn.pool, drawn.generated, choice.strategy(), fixed)
        usage = _drawn_usage(drawn, run.samples, run.generated_tokens)
        return run.accuracy, usage if fixed else _plus(probe, usage)
    rec = inst.runs[choice.spec]
    return float(bool(rec.get("correct"))), _plus(probe, _usage(rec))


def available(inst: Instance, choice: Choice) -> bool:
    """Whether ``inst`` can score ``choice``: from a pool, or from the strategy's own run."""
    if choice.k:
        return choice.draw in inst.pools and choice.k <= inst.pools[choice.draw or ""].n
    return choice.spec in inst.runs or _replayed_from(inst, choice) is not None


def other_runs(records: Sequence[dict[str, Any]]) -> dict[tuple[str, Any], dict[str, Any]]:
    """Per (problem, seed), the records of strategies that do not pool (nor adaptive)."""
    out: dict[tuple[str, Any], dict[str, Any]] = {}
    for rec in records:
        name = strategy_name(rec["strategy"])
        if draw_spec(rec["strategy"]) is not None or name == POLICY_STRATEGY or rec.get("error"):
            continue
        out.setdefault((problem_key(rec), rec.get("seed")), {})[rec["strategy"]] = rec
    return out


def pooled_records(records: Sequence[dict[str, Any]]
                   ) -> dict[str, list[dict[str, dict[str, Any]]]]:
    """Per problem, one {draw spec: largest record drawing so} per seed: the sample-once pools
    (sampling of every vote family, no-thinking answers)."""
    best: dict[tuple[str, Any], dict[str, dict[str, Any]]] = {}
    for rec in records:
        draw = draw_spec(rec["strategy"])
        if draw is None or not rec.get("candidates") or rec.get("error"):
            continue
        have = best.setdefault((problem_key(rec), rec.get("seed")), {})
        if draw not in have or len(rec["candidates"]) > len(have[draw]["candidates"]):
            have[draw] = rec
    out: dict[str, list[dict[str, dict[str, Any]]]] = {}
    for (prob, _), by_draw in sorted(best.items(), key=lambda kv: str(kv[0])):
        out.setdefault(prob, []).append(by_draw)
    return out


def cheapest_draw(pooled: dict[str, list[dict[str, dict[str, Any]]]]) -> str:
    """The draw spec whose samples (in :func:`pooled_records`' pools) cost the fewest generated
    tokens on average: the default probe, since a probe is paid on every problem. ValueError
    if nothing pools."""
    tokens: dict[str, list[float]] = {}
    for sets in pooled.values():
        for by_draw in sets:
            for draw, rec in by_draw.items():
                tokens.setdefault(draw, []).extend(
                    float(c.get("generated_tokens", 0)) for c in rec["candidates"])
    if not tokens:
        raise ValueError("the store has no sampling records (self-consistency, weighted-vote, "
                         "best-of-n or no-thinking) to fit a policy on: the probe needs a "
                         "sampled pool")
    return min(tokens, key=lambda d: (float(np.mean(tokens[d])), d))


def instances(records: Sequence[dict[str, Any]], problems: Sequence[str], probe_k: int,
              statistic: str, probe: str | None = None) -> list[Instance]:
    """The pools of ``problems`` (one set per seed) with the other strategies' runs; the
    probe statistic comes from the first ``probe_k`` samples of the pool drawn as ``probe``
    (a draw spec; default: the cheapest), and problems without that pool are left out."""
    pools = pooled_records(records)
    probe = probe or cheapest_draw(pools)
    runs = other_runs(records)
    out = []
    for prob in problems:
        for by_draw in pools.get(prob, []):
            if probe not in by_draw:
                continue
            drawn = {d: Drawn(rec, Pool.of(rec["candidates"])) for d, rec in by_draw.items()}
            rec = by_draw[probe]
            out.append(Instance(prob, drawn, probe,
                                probe_statistic(rec["candidates"], probe_k, statistic),
                                runs.get((prob, rec.get("seed")), {})))
    return out


def choices(insts: Sequence[Instance], probe_k: int) -> list[Choice]:
    """Every configuration a policy may pick: each pool's vote families at each k (at least
    the probe's k for the probe's pool), early stopping replayed from sampling pools, plus each
    other strategy the sweep ran on (nearly) every problem."""
    out: list[Choice] = []
    common = [d for d in insts[0].pools if all(d in i.pools for i in insts)]
    for draw in sorted(common, key=lambda d: d != insts[0].probe):
        drawn = [i.pools[draw] for i in insts]
        n = min(d.n for d in drawn)
        source = drawn[0].record["strategy"]
        pool = pools()[strategy_name(source)]
        scored = all(d.pool.scored for d in drawn)
        fams: tuple[str, ...] = (pool.family,) if pool.own_draw else (
            ("majority", "weighted", "best-of") if scored else ("majority",))
        least = probe_k if draw == insts[0].probe else 1
        out += [Choice(spec=sampling_spec(source, f, k)) for f in fams for k in default_ks(n)
                if k >= least]
        if not pool.own_draw:
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
               probe: str | None = None, source: str = "",
               train: Sequence[str] | None = None) -> Policy:
    """Fit a Policy on the training split of a sweep's records, across strategy families.

    The probe draws like ``probe`` (a pooled spec: ``no-thinking``, ``self-consistency`` with
    sampler settings; its pool must be in the sweep), by default like the pool whose samples
    are cheapest. With ``feature="prompt_chars"`` every probe bin is split at the training
    problems' median question length (when they differ). A bin's accuracy per configuration
    is shrunk toward that configuration's accuracy over all training problems as if ``prior``
    more problems had scored it, so a small bin cannot crown a configuration on a few lucky
    problems. ``train`` fits on exactly those problems (cross-fitting: nothing held out here).
    """
    pooled = pooled_records(records)
    draw = cheapest_draw(pooled) if probe is None else probe_draw(probe)
    pools = {p: [by[draw] for by in sets if draw in by] for p, sets in pooled.items()}
    pools = {p: rs for p, rs in pools.items() if rs}
    if not pools:
        raise ValueError(f"no problem has a pool drawn as the probe {draw!r}")
    n = min(len(r["candidates"]) for rs in pools.values() for r in rs)
    if probe_k >= n:
        raise ValueError(f"probe_k={probe_k} must be below the probe pool's samples per "
                         f"problem ({n})")
    held: list[str] = []
    if train is not None:
        train = sorted(p for p in train if p in pools)
        if not train:
            raise ValueError("none of the training problems has the probe's pool")
    else:
        train, held = split(sorted(pools), holdout, seed)
        if not train or not held:
            raise ValueError(f"{len(pools)} problems are too few to split into train and "
                             "held-out")
    insts = instances(records, train, probe_k, statistic, draw)
    opts = choices(insts, probe_k)
    insts = [i for i in insts if all(available(i, c) for c in opts)]
    if statistic == "score" and not all(i.probed.pool.scored for i in insts):
        raise ValueError("statistic 'score' needs a verifier's scores on the sampling pool")
    edges = fit_edges([i.statistic for i in insts], bins)
    lengths = [i.chars for i in insts]
    cut = float(np.median(lengths)) if feature and min(lengths) < max(lengths) else None
    settings = make_strategy(draw)
    verifiers = [make_strategy(d.record["strategy"]).verifier or d.record.get("verifier")
                 for d in insts[0].pools.values()]
    proto = Policy(probe_k=probe_k, statistic=statistic, edges=edges, unit=unit, budgets={},
                   feature=feature if cut is not None else None, feature_cut=cut,
                   train=train, heldout=held, temperature=settings.temperature,
                   max_tokens=settings.max_tokens, probe=draw,
                   verifier=next((v for v in verifiers if v), None), source=source)
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
        top = max(float(np.mean([unit_cost(scored[id(i)][c][1], unit) for i in insts]))
                  for c in opts if c.k)
        budgets = sorted({_round(top * f) for f in FRACTIONS})
    rows = {}
    for budget in sorted(budgets):
        pick = allocate(table, weights, float(budget))
        rows[_key(budget)] = [pick[b] for b in range(1, proto.bins + 1)]
    labels = distinct_labels(opts)
    summary = {str(b): {labels[c]: [round(a, 4), round(cost, 6 if unit != "tokens" else 1),
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
    draw = draw_spec(policy.prober_spec)
    for inst in instances(records, problems, policy.probe_k, policy.statistic, draw):
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


@dataclass(frozen=True)
class FitRule:
    """How a policy is fitted, every option but the problems and the budgets: one rule shared
    by ``testtime fit-policy``, the report and the benches, so what is cross-fitted is what
    ships."""

    probe_k: int = 2
    bins: int = 3
    statistic: Statistic = "agreement"
    feature: Literal["prompt_chars"] | None = None
    prior: float = PRIOR
    probe: str | None = None
    unit: Unit = "tokens"

    @classmethod
    def of(cls, policy: Policy) -> FitRule:
        """The rule that fits policies like ``policy`` (its probe, statistic, bins, feature
        and unit; the default prior)."""
        return cls(probe_k=policy.probe_k, bins=len(policy.edges) + 1,
                   statistic=policy.statistic, feature=policy.feature, probe=policy.probe,
                   unit=policy.unit)

    def fit(self, records: Sequence[dict[str, Any]], train: Sequence[str],
            budgets: Sequence[float], source: str = "") -> Policy:
        """The policy fitted on exactly ``train`` at ``budgets``."""
        return fit_policy(records, probe_k=self.probe_k, bins=self.bins,
                          statistic=self.statistic, budgets=budgets, unit=self.unit,
                          feature=self.feature, prior=self.prior, probe=self.probe,
                          source=source, train=train)

