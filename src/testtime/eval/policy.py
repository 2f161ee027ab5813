"""Fit the compute-optimal policy on a sweep and evaluate it on held-out problems.

For every training problem the probe (the first k samples of one of its sample pools, by
default the pool with the cheapest samples: no-thinking answers when the sweep has them)
gives difficulty features: how much its samples agree, their mean confidence score (when the
pool was scored), and the prompt's length in tokens (from greedy decoding's record: one call
reading the problem's own prompt). A logistic fit of the training problems' pass rates on a set
of features gives a difficulty score, cut at training quantiles into bins; the feature set is
chosen among candidates by inner folds of the training problems (the accuracy their held-out
parts get at the budgets). Every configuration has an expected accuracy and cost given
that probe: each pool's vote families at k (majority, weighted or best-of from a sampling
pool, no-thinking@k from a no-thinking pool; the probe's pool reuses the probe's samples) and
early stopping at several batch sizes and thresholds (replayed over orders of a sampling pool,
probe first when it is the probe's: :mod:`testtime.eval.stopping`) are scored without sampling
again; every other strategy the sweep ran (greedy decoding, beam, revision, deepconf, ...)
counts as its own record's outcome, its cost plus the probe's. A bin's accuracies are shrunk toward
the all-problem ones (``prior``), as small bins overfit. Per budget (mean cost per problem in
the chosen unit, probe included) the policy picks one configuration per bin to maximise mean
accuracy within the budget (a Lagrangian relaxation of the multiple-choice knapsack), or one
configuration for every problem without a probe, and holds budgets at or above greedy
decoding's cost to greedy wherever the training problems do not show something beats it
(:mod:`testtime.eval.allocation`). Evaluation replays the procedure on held-out problems, so
no problem used for fitting is scored.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from testtime.eval.allocation import Scored, bin_tables, plan_rows
from testtime.eval.curves import (
    Point,
    Pool,
    default_ks,
    problem_key,
    strategy_name,
    subset_mask,
)
from testtime.eval.difficulty import assign_folds, fit_edges, fit_logistic, split
from testtime.eval.stopping import early_stop_choices, replay_early_stop, replays
from testtime.policy import (
    FEATURES,
    POLICY_STRATEGY,
    Choice,
    Feature,
    Policy,
    Unit,
    distinct_labels,
    draw_spec,
    pools,
    probe_draw,
    sampling_spec,
    stored_features,
)
from testtime.strategies.base import make_strategy

COST_FIELDS = ("generated_tokens", "verifier_tokens", "prompt_tokens", "calls", "flops",
               "seconds")
FRACTIONS = (1 / 64, 1 / 32, 1 / 16, 1 / 8, 3 / 16, 1 / 4, 3 / 8, 1 / 2, 3 / 4, 1)
"""Default budgets: these shares of the largest sampling configuration's mean cost."""
NEAR = 0.1
"""A default budget this close to greedy decoding's cost (as a share of it) is left out."""
PRIOR = 4.0
"""Pseudo-problems shrinking each bin's accuracies toward the all-problem accuracies."""
COVERAGE = 0.8
"""A strategy enters the choice set when the sweep ran it on this share of the problems."""
FEATURE_SETS: tuple[tuple[Feature, ...], ...] = (
    ("agreement",), ("confidence",), ("prompt_tokens",), ("agreement", "confidence"),
    ("agreement", "prompt_tokens"), ("confidence", "prompt_tokens"),
    ("agreement", "confidence", "prompt_tokens"))
"""Candidate difficulty features, simplest first (the first wins ties)."""
INNER = 3
"""Inner folds of the training problems choosing the feature set."""


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
    """One problem under one seed: its pools by draw spec (the probe's among them), the
    probe's difficulty features and the other strategies' runs."""

    problem: str
    pools: dict[str, Drawn]
    probe: str
    features: dict[str, float]
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
        """Length of the question in characters (older policies split bins by it)."""
        return len(self.record.get("question") or "")

    @property
    def pass_rate(self) -> float:
        """Share of correct samples over all of its pools: its oracle difficulty."""
        hits = [bool(c.get("correct")) for d in self.pools.values()
                for c in d.record["candidates"]]
        return float(np.mean(hits)) if hits else 0.0

    @property
    def greedy_record(self) -> dict[str, Any] | None:
        """Its greedy decoding run (``single``, one call on the problem's own prompt)."""
        return greedy_run(self.runs)


def unit_cost(usage: dict[str, float], unit: Unit) -> float:
    """A usage's cost in ``unit``: generated + verifier tokens, FLOPs or seconds."""
    if unit == "tokens":
        return float(usage.get("generated_tokens", 0)) + float(usage.get("verifier_tokens", 0))
    return float(usage.get(unit, 0.0))


def _usage(rec: dict[str, Any]) -> dict[str, float]:
    u = rec.get("usage") or {}
    return {k: float(u.get(k, 0) or 0) for k in COST_FIELDS}


def probe_usage(inst: Instance, probe_k: int, *, counted: bool = False) -> dict[str, float]:
    """What the probe's samples cost: their own tokens, the pool's other costs pro rata;
    ``counted``: plus the call counting the prompt's tokens."""
    drawn = inst.probed
    usage = _drawn_usage(drawn, probe_k, float(drawn.generated[:probe_k].sum()))
    return _plus(usage, count_usage(inst)) if counted and probe_k else usage


def count_usage(inst: Instance) -> dict[str, float]:
    """What counting the prompt's tokens costs at serve time: a one-token greedy call reading
    the prompt (FLOPs and seconds: greedy decoding's, pro rata of the tokens processed)."""
    rec = inst.greedy_record
    u = _usage(rec) if rec else dict.fromkeys(COST_FIELDS, 0.0)
    share = (u["prompt_tokens"] + 1) / max(u["prompt_tokens"] + u["generated_tokens"], 1.0)
    return {**dict.fromkeys(COST_FIELDS, 0.0), "generated_tokens": 1.0, "calls": 1.0,
            "prompt_tokens": u["prompt_tokens"], "flops": u["flops"] * share,
            "seconds": u["seconds"] * share}


def greedy_run(runs: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """Among a problem's runs, greedy decoding's (``single``), if the sweep ran it."""
    return next((rec for spec, rec in sorted(runs.items())
                 if strategy_name(spec) == "single"), None)


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


def outcome(inst: Instance, choice: Choice, probe_k: int, *, limit: int = 256,
            counted: bool = False) -> tuple[float, dict[str, float]]:
    """Expected correctness and usage of ``choice`` on ``inst`` after its probe (``counted``:
    the probe counts the prompt's tokens too).

    A configuration drawing like the probe reuses the probe's samples; any other pays the probe
    and its own draws."""
    probe = probe_usage(inst, probe_k, counted=counted)
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
        if fixed and counted:
            usage = _plus(usage, count_usage(inst))
        return accuracy, usage if fixed else _plus(probe, usage)
    source = None if choice.spec in inst.runs else _replayed_from(inst, choice)
    if source is not None:
        drawn = inst.pools[source]
        fixed = probe_k if source == inst.probe else 0
        run = replay_early_stop(drawn.pool, drawn.generated, choice.strategy(), fixed)
        usage = _drawn_usage(drawn, run.samples, run.generated_tokens)
        if fixed and counted:
            usage = _plus(usage, count_usage(inst))
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
              probe: str | None = None) -> list[Instance]:
    """The pools of ``problems`` (one set per seed) with the other strategies' runs; the
    probe's features come from the first ``probe_k`` samples of the pool drawn as ``probe``
    (a draw spec; default: the cheapest), and problems without that pool are left out."""
    return Prepared(records).instances(problems, probe_k, probe)


class Prepared:
    """A sweep's records read once for fitting: pools and runs per problem, instances per
    probe, and every outcome computed once (a fit scores the same configuration on a problem
    for many feature sets and folds). Read at construction: build a new one after changing
    the records."""

    def __init__(self, records: Sequence[dict[str, Any]]) -> None:
        self.records = records
        self.pooled = pooled_records(records)
        self.runs = other_runs(records)
        self._insts: dict[tuple[str, int, str], list[Instance]] = {}
        self._outcomes: dict[tuple[int, str, int, bool], tuple[float, dict[str, float]]] = {}

    def instances(self, problems: Sequence[str], probe_k: int, probe: str | None = None
                  ) -> list[Instance]:
        """:func:`instances` of ``problems``."""
        probe = probe or cheapest_draw(self.pooled)
        return [i for p in problems for i in self._of(p, probe_k, probe)]

    def _of(self, prob: str, probe_k: int, probe: str) -> list[Instance]:
        key = (prob, probe_k, probe)
        if key not in self._insts:
            out = []
            for by_draw in self.pooled.get(prob, []):
                if probe not in by_draw:
                    continue
                drawn = {d: Drawn(rec, Pool.of(rec["candidates"])) for d, rec in by_draw.items()}
                rec = by_draw[probe]
                runs = self.runs.get((prob, rec.get("seed")), {})
                greedy = greedy_run(runs)
                tokens = int(_usage(greedy)["prompt_tokens"]) if greedy else None
                out.append(Instance(prob, drawn, probe,
                                    stored_features(rec["candidates"][:probe_k], tokens), runs))
            self._insts[key] = out
        return self._insts[key]

    def outcome(self, inst: Instance, choice: Choice, probe_k: int, *, counted: bool = False
                ) -> tuple[float, dict[str, float]]:
        """:func:`outcome`, computed once per instance, choice and probe."""
        key = (id(inst), choice.spec, probe_k, counted)
        if key not in self._outcomes:
            self._outcomes[key] = outcome(inst, choice, probe_k, counted=counted)
        return self._outcomes[key]


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


def greedy_choice(insts: Sequence[Instance], opts: Sequence[Choice], prep: Prepared
                  ) -> Choice | None:
    """Greedy decoding among ``opts`` (``single`` at temperature 0): the most accurate on
    ``insts`` when the sweep ran several (ties: the cheaper); None if it ran none."""
    greedy = [c for c in opts if c.name == "single"
              and float(getattr(c.strategy(), "temperature", 0.0)) == 0.0]

    def key(c: Choice) -> tuple[float, float]:
        outs = [prep.outcome(i, c, 0) for i in insts]
        return (float(np.mean([o[0] for o in outs])),
                -float(np.mean([o[1]["generated_tokens"] for o in outs])))
    return max(greedy, key=key) if greedy else None


@dataclass(frozen=True)
class Fitting:
    """One fit's training problems, options and their outcome matrices (columns: options)."""

    insts: list[Instance]
    opts: list[Choice]
    plain: Scored
    counted: Scored
    greedy: int | None
    probe_k: int
    bins: int
    prior: float
    budgets: list[float]

    def scored(self, features: Sequence[Feature]) -> Scored:
        """The matrices a policy reading ``features`` is charged by (counting the prompt's
        tokens costs a call)."""
        return self.counted if "prompt_tokens" in features else self.plain

    def fit(self, features: Sequence[Feature], keep: np.ndarray) -> tuple[Policy, list[list[int]]]:
        """The difficulty score on ``features`` and the rows per budget, fitted on the
        problems ``keep`` selects."""
        insts = [i for i, k in zip(self.insts, keep, strict=True) if k]
        x = np.array([[i.features[f] for f in features] for i in insts])
        coef, intercept = fit_logistic(x, np.array([i.pass_rate for i in insts]))
        proto = Policy(probe_k=self.probe_k, features=list(features),
                       coef=[float(c) for c in coef], intercept=intercept,
                       means=[float(m) for m in x.mean(axis=0)], edges=[], budgets={})
        edges = fit_edges([proto.score(i.features) for i in insts], self.bins)
        proto = proto.model_copy(update={"edges": edges})
        bins_of = np.array([proto.predict(i.features) for i in insts])
        rows = plan_rows(self.scored(features).rows(keep), bins_of, proto.bins, self.budgets,
                         self.prior, self.greedy)
        return proto, rows

    def heldout_accuracy(self, features: Sequence[Feature], keep: np.ndarray) -> np.ndarray:
        """Per problem that ``keep`` leaves out, its mean accuracy over the budgets under the
        policy fitted on the rest."""
        proto, rows = self.fit(features, keep)
        scored = self.scored(features)
        held = np.flatnonzero(~keep)
        out = np.zeros(len(held))
        for row in rows:
            for n, i in enumerate(held):
                if len(set(row)) == 1:
                    out[n] += scored.acc0[i, row[0]]
                else:
                    out[n] += scored.acc[i, row[proto.predict(self.insts[i].features) - 1]]
        return out / max(len(rows), 1)

    def select(self, candidates: Sequence[tuple[Feature, ...]], inner: int
               ) -> tuple[tuple[Feature, ...], dict[str, float]]:
        """The candidate feature set whose policies, fitted on inner folds of these problems,
        score best on the folds left out (ties: the earlier, simpler set), and every
        candidate's inner accuracy."""
        problems = sorted({i.problem for i in self.insts})
        if len(candidates) == 1 or inner < 2 or len(problems) < 2 * inner:
            return candidates[0], {}
        folds = [set(f) for f in assign_folds(problems, inner)]
        tried: dict[str, float] = {}
        for features in candidates:
            accs = [self.heldout_accuracy(features, np.array([i.problem not in fold
                                                              for i in self.insts]))
                    for fold in folds]
            tried["+".join(features)] = round(float(np.mean(np.concatenate(accs))), 4)
        best = max(range(len(candidates)),
                   key=lambda n: (tried["+".join(candidates[n])], -n))
        return candidates[best], tried


def _matrices(prep: Prepared, insts: Sequence[Instance], opts: Sequence[Choice], probe_k: int,
              unit: Unit) -> tuple[Scored, Scored]:
    def grid(k: int, counted: bool) -> tuple[np.ndarray, np.ndarray]:
        outs = [[prep.outcome(i, c, k, counted=counted) for c in opts] for i in insts]
        return (np.array([[o[0] for o in row] for row in outs]),
                np.array([[unit_cost(o[1], unit) for o in row] for row in outs]))
    acc, cost = grid(probe_k, False)
    acc0, cost0 = grid(0, False)
    plain = Scored(acc, cost, acc0, cost0)
    if not all("prompt_tokens" in i.features for i in insts):
        return plain, plain
    acc_c, cost_c = grid(probe_k, True)
    return plain, Scored(acc_c, cost_c, acc0, cost0)


def fit_policy(records: Sequence[dict[str, Any]], *, probe_k: int = 2, bins: int = 3,
               features: Sequence[Feature] | None = None,
               budgets: Sequence[float] | None = None, unit: Unit = "tokens",
               holdout: float = 0.5, seed: int = 0, prior: float = PRIOR,
               probe: str | None = None, source: str = "",
               train: Sequence[str] | None = None, inner: int = INNER,
               prepared: Prepared | None = None) -> Policy:
    """Fit a Policy on the training split of a sweep's records, across strategy families.

    The probe draws like ``probe`` (a pooled spec: ``no-thinking``, ``self-consistency`` with
    sampler settings; its pool must be in the sweep), by default like the pool whose samples
    are cheapest. ``features`` fixes the difficulty features; unset, the fit picks among
    :data:`FEATURE_SETS` (those the records carry) by ``inner`` folds of the training
    problems. A bin's accuracy per configuration is shrunk toward that configuration's
    accuracy over all training problems as if ``prior`` more problems had scored it, so a small
    bin cannot crown a configuration on a few lucky problems. ``train`` fits on exactly those
    problems (cross-fitting: nothing held out here); ``prepared`` reuses records already read.
    """
    prep = prepared or Prepared(records)
    draw = cheapest_draw(prep.pooled) if probe is None else probe_draw(probe)
    pools = {p: [by[draw] for by in sets if draw in by] for p, sets in prep.pooled.items()}
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
    insts = prep.instances(train, probe_k, draw)
    opts = choices(insts, probe_k)
    insts = [i for i in insts if all(available(i, c) for c in opts)]
    if not insts:
        raise ValueError("no training problem has every configuration's record")
    have = [f for f in FEATURES if all(f in i.features for i in insts)]
    if features:
        missing = [f for f in features if f not in have]
        if missing:
            raise ValueError(f"the records do not give feature {missing[0]!r} on every "
                             "training problem (confidence needs a scored probe pool, "
                             "prompt_tokens a greedy decoding run: single)")
        candidates: list[tuple[Feature, ...]] = [tuple(features)]
    else:
        candidates = [fs for fs in FEATURE_SETS if set(fs) <= set(have)]
    greedy = greedy_choice(insts, opts, prep)
    g = None if greedy is None else opts.index(greedy)
    plain, counted = _matrices(prep, insts, opts, probe_k, unit)
    if budgets is None:
        top = max(float(plain.cost0[:, j].mean()) for j, c in enumerate(opts) if c.k)
        budgets = default_budgets(top, None if g is None else float(plain.cost0[:, g].mean()))
    fitting = Fitting(insts, opts, plain, counted, g, probe_k, bins, prior,
                      sorted(float(b) for b in budgets))
    chosen, tried = fitting.select(candidates, inner)
    everyone = np.ones(len(insts), dtype=bool)
    proto, rows = fitting.fit(chosen, everyone)
    settings = make_strategy(draw)
    verifiers = [make_strategy(d.record["strategy"]).verifier or d.record.get("verifier")
                 for d in insts[0].pools.values()]
    probed = insts[0].probed.record
    bins_of = np.array([proto.predict(i.features) for i in insts])
    acc_t, cost_t, _ = bin_tables(fitting.scored(chosen), bins_of, proto.bins, prior)
    labels = distinct_labels(opts)
    summary = {str(b + 1): {labels[c]: [round(float(acc_t[b, j]), 4),
                                        round(float(cost_t[b, j]), 6 if unit != "tokens" else 1),
                                        int((bins_of == b + 1).sum())]
                            for j, c in enumerate(opts)} for b in range(proto.bins)}
    return proto.model_copy(update={
        "budgets": {budget_key(b): [opts[j] for j in row]
                    for b, row in zip(fitting.budgets, rows, strict=True)},
        "table": summary, "unit": unit, "train": train, "heldout": held, "source": source,
        "temperature": settings.temperature, "max_tokens": settings.max_tokens, "probe": draw,
        "verifier": next((v for v in verifiers if v), None),
        "probe_verifier": make_strategy(probed["strategy"]).verifier or probed.get("verifier"),
        "feature_sets": tried, "greedy": None if greedy is None else greedy.spec})


def default_budgets(top: float, greedy: float | None) -> list[float]:
    """The budgets a fit evaluates unless told: ``FRACTIONS`` of ``top`` (the largest sampling
    configuration's mean cost) and greedy decoding's mean cost rounded up (so that it buys
    greedy decoding), leaving out any share within ``NEAR`` of greedy's cost, which would be
    the same budget twice."""
    grid = {_round(top * f) for f in FRACTIONS}
    if greedy is None:
        return sorted(grid)
    anchor = float(math.ceil(greedy))
    return sorted({b for b in grid if abs(b - anchor) > NEAR * anchor} | {anchor})


def _round(x: float) -> float:
    return float(round(x)) if x >= 10 else float(f"{x:.3g}")


def budget_key(budget: float) -> str:
    """How a budget is written in a policy file."""
    return str(int(budget)) if float(budget).is_integer() else f"{budget:g}"


def simulate(policy: Policy, records: Sequence[dict[str, Any]], problems: Sequence[str],
             budget: str) -> list[Point]:
    """Points of the adaptive strategy under ``budget`` on ``problems``, replayed from records.

    A problem lacking the record of the configuration chosen for it is left out.
    """
    return replay(policy, Prepared(records), problems, budget)


def replay(policy: Policy, prep: Prepared, problems: Sequence[str], budget: str
           ) -> list[Point]:
    """:func:`simulate` on records already read. A budget whose bins all choose one
    configuration runs it without the probe, as the adaptive strategy does."""
    out = []
    draw = draw_spec(policy.prober_spec)
    probed = policy.probed(budget)
    counted = policy.uses("prompt_tokens")
    for inst in prep.instances(problems, policy.probe_k, draw):
        row = policy.budgets[budget]
        choice = row[policy.predict(inst.features, inst.chars) - 1] if probed else row[0]
        if not available(inst, choice):
            continue
        correct, u = prep.outcome(inst, choice, policy.probe_k if probed else 0,
                                  counted=counted and probed)
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
    features: tuple[Feature, ...] | None = None
    prior: float = PRIOR
    probe: str | None = None
    unit: Unit = "tokens"
    inner: int = INNER
    _read: dict[int, Prepared] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, policy: Policy) -> FitRule:
        """The rule that fits policies like ``policy`` (its probe, bins and unit; the
        feature set chosen again by inner folds; the default prior)."""
        return cls(probe_k=policy.probe_k, bins=len(policy.edges) + 1, probe=policy.probe,
                   unit=policy.unit)

    def prepared(self, records: Sequence[dict[str, Any]]) -> Prepared:
        """``records`` read once for every fit of this rule on them."""
        held = self._read.get(id(records))
        if held is None or held.records is not records:
            held = self._read[id(records)] = Prepared(records)
        return held

    def fit(self, records: Sequence[dict[str, Any]], train: Sequence[str],
            budgets: Sequence[float], source: str = "") -> Policy:
        """The policy fitted on exactly ``train`` at ``budgets``."""
        return fit_policy(records, probe_k=self.probe_k, bins=self.bins,
                          features=self.features, budgets=budgets, unit=self.unit,
                          prior=self.prior, probe=self.probe, source=source, train=train,
                          inner=self.inner, prepared=self.prepared(records))

