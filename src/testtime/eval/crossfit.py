"""Cross-fitted evaluation of the compute-optimal policy: a protocol that cannot flatter it.

    assign every problem to one of K folds (by a hash of its id)
    for each fold f:
        fit on the other folds only: the policy (probe, difficulty cuts, per-bin choices),
            the best fixed configuration per budget, the self-consistency baseline's pool
            (its temperature), greedy decoding's spec, and which budget to headline
            (an inner cross-fit on those folds: the cheapest budget whose policy is
            non-inferior to SC@16 there)
        score fold f's problems with what was fitted: each problem is scored exactly once
    report over all problems: accuracy and cost per budget, paired bootstrap intervals of the
    difference against SC@16 and against greedy decoding

The budgets are one grid for every fold and the shipped policy, computed from costs alone
(shares of the most expensive sampling configuration's mean cost), so they are exactly the
budgets the report evaluates. "Matches SC@16" means non-inferior: the lower end of the paired
95% interval of (policy - SC@16) is at least ``-MARGIN``; the margin is fixed here, before
any result is seen.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from testtime.eval.difficulty import assign_folds
from testtime.eval.policy import (
    Instance,
    Prepared,
    budget_key,
    choices,
    default_budgets,
    outcome,
    pooled_records,
    replay,
    unit_cost,
)
from testtime.policy import Choice, Policy, Unit, draw_spec, sampling_spec

MARGIN = 0.05
"""Non-inferiority margin in accuracy: fixed before looking at any result."""
MIN_PROBLEMS = 60
"""Fewer complete problems than this give intervals too wide for a headline."""
REPS = 4000

Fit = Callable[[Sequence[str], Sequence[float]], Policy]
"""Fits a policy at the given budgets on exactly the given training problems (every choice
made on them)."""


@dataclass(frozen=True)
class Paired:
    """Mean of (a - b) over paired problems with its percentile bootstrap 95% interval."""

    diff: float
    lo: float
    hi: float

    @property
    def non_inferior(self) -> bool:
        """Whether a is at worst ``MARGIN`` below b (the interval's lower end says so)."""
        return self.lo >= -MARGIN

    def __str__(self) -> str:
        return f"{self.diff:+.3f} [{self.lo:+.3f}, {self.hi:+.3f}]"


def paired(a: Sequence[float], b: Sequence[float], *, reps: int = REPS, seed: int = 0
           ) -> Paired:
    """Paired bootstrap of the mean difference: problems are resampled, pairs kept whole."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if d.size == 0:
        return Paired(float("nan"), float("nan"), float("nan"))
    idx = np.random.default_rng(seed).integers(0, d.size, size=(reps, d.size))
    means = d[idx].mean(axis=1)
    lo, hi = np.quantile(means, [0.025, 0.975])
    return Paired(float(d.mean()), float(lo), float(hi))


@dataclass
class Scores:
    """Per-problem correctness (expected, in [0, 1]) and cost of one method, by problem."""

    correct: dict[str, float] = field(default_factory=dict)
    cost: dict[str, float] = field(default_factory=dict)
    picked: dict[str, str] = field(default_factory=dict)

    def add(self, problem: str, correct: float, cost: float, picked: str = "") -> None:
        """Record one problem's outcome (and what was run on it)."""
        self.correct[problem], self.cost[problem] = correct, cost
        if picked:
            self.picked[problem] = picked

    def accuracy(self, problems: Sequence[str]) -> float:
        """Mean correctness over ``problems``."""
        return float(np.mean([self.correct[p] for p in problems]))

    def mean_cost(self, problems: Sequence[str]) -> float:
        """Mean cost over ``problems``."""
        return float(np.mean([self.cost[p] for p in problems]))

    def versus(self, other: Scores, problems: Sequence[str]) -> Paired:
        """Paired difference of accuracy against ``other`` on ``problems``."""
        return paired([self.correct[p] for p in problems], [other.correct[p] for p in problems])


def budget_grid(records: Sequence[dict[str, Any]], problems: Sequence[str], unit: Unit,
                prepared: Prepared | None = None) -> list[float]:
    """Budgets as shares of the most expensive pooled configuration's mean cost (no probe),
    and greedy decoding's mean cost where the sweep ran it: computed from costs alone, so every
    fold and the shipped policy share them."""
    prep = prepared or Prepared(records)
    insts = prep.instances(problems, 1)
    opts = choices(insts, 0)

    def mean_cost(c: Choice) -> float:
        return float(np.mean([unit_cost(outcome(i, c, 0)[1], unit) for i in insts]))
    top = max(mean_cost(c) for c in opts if c.k)
    greedy = [c for c in opts if c.name == "single"
              and float(getattr(c.strategy(), "temperature", 0.0)) == 0.0]
    return default_budgets(top, min(mean_cost(c) for c in greedy) if greedy else None)


def baseline_choices(insts: Sequence[Instance], n: int) -> tuple[list[Choice], list[Choice]]:
    """Candidate SC@n configurations (majority of n from each sampling pool, one per
    temperature) and greedy decoding runs (``single`` at temperature 0) the records hold."""
    sc = []
    for draw in insts[0].pools:
        drawn = insts[0].pools[draw]
        source = drawn.record["strategy"]
        if draw.startswith("self-consistency") and drawn.n >= n:
            sc.append(Choice(spec=sampling_spec(source, "majority", n)))
    greedy = sorted({s for i in insts for s in i.runs if s.split(":")[0] == "single"
                     and float(getattr(Choice(spec=s).strategy(), "temperature", 0)) == 0.0})
    return sc, [Choice(spec=s) for s in greedy]


class Outcomes:
    """:func:`outcome` without a probe, computed once per problem and configuration for one
    set of records: cross-fitting scores the same configuration on a problem in many folds."""

    def __init__(self) -> None:
        self._memo: dict[tuple[str, str, str], tuple[float, dict[str, float]]] = {}

    def __call__(self, inst: Instance, choice: Choice) -> tuple[float, dict[str, float]]:
        key = (inst.problem, inst.probe, choice.spec)
        if key not in self._memo:
            self._memo[key] = outcome(inst, choice, 0)
        return self._memo[key]


def best_on(insts: Sequence[Instance], options: Sequence[Choice], scored: Outcomes
            ) -> Choice:
    """The option with the highest mean accuracy on ``insts`` (ties: the cheaper)."""
    def key(c: Choice) -> tuple[float, float]:
        outs = [scored(i, c) for i in insts]
        return (float(np.mean([o[0] for o in outs])),
                -float(np.mean([o[1]["generated_tokens"] for o in outs])))
    return max(options, key=key)


def best_fixed(insts: Sequence[Instance], options: Sequence[Choice], budget: float,
               unit: Unit, scored: Outcomes) -> Choice:
    """The single configuration (no probe) with the best mean accuracy on ``insts`` whose
    mean cost fits ``budget``; the cheapest one when none fits."""
    rows = []
    for c in options:
        outs = [scored(i, c) for i in insts]
        rows.append((float(np.mean([o[0] for o in outs])),
                     float(np.mean([unit_cost(o[1], unit) for o in outs])), c))
    fitting = [r for r in rows if r[1] <= budget]
    if not fitting:
        return min(rows, key=lambda r: r[1])[2]
    return max(fitting, key=lambda r: (r[0], -r[1]))[2]


@dataclass
class FoldResult:
    """What one outer fold's training problems chose, scored on its held-out problems."""

    policy: dict[float, Scores]
    fixed: dict[float, Scores]
    sc: Scores
    greedy: Scores
    chosen_budget: float | None
    features: str = ""


@dataclass
class CrossFit:
    """Every method's held-out scores over all folds, per budget of the shared grid."""

    problems: list[str]
    folds: int
    unit: Unit
    budgets: list[float]
    policy: dict[float, Scores]
    fixed: dict[float, Scores]
    sc: Scores
    greedy: Scores
    chosen: Scores
    chosen_budgets: list[float | None]
    sc_n: int
    features: list[str] = field(default_factory=list)

    @property
    def enough(self) -> bool:
        """Whether there are enough problems for a headline."""
        return len(self.problems) >= MIN_PROBLEMS

    def share(self) -> tuple[float, Paired]:
        """The headline: the share of SC@n's mean cost the policy spends at the budget its
        training folds chose, when it is non-inferior to SC@n there (1.0 when it is not),
        with the paired interval of the difference."""
        diff = self.chosen.versus(self.sc, self.problems)
        cost = self.chosen.mean_cost(self.problems) / self.sc.mean_cost(self.problems)
        return (cost if diff.non_inferior else 1.0), diff

    def rows(self) -> list[dict[str, Any]]:
        """Per budget: the policy's and the best fixed configuration's held-out accuracy,
        cost, share of SC@n's cost, and paired differences against SC@n and greedy."""
        ps, sc_cost = self.problems, self.sc.mean_cost(self.problems)
        out = []
        for b in self.budgets:
            pol, fix = self.policy[b], self.fixed[b]
            out.append({
                "budget": b, "accuracy": pol.accuracy(ps), "cost": pol.mean_cost(ps),
                "share": pol.mean_cost(ps) / sc_cost, "vs_sc": pol.versus(self.sc, ps),
                "vs_greedy": pol.versus(self.greedy, ps),
                "fixed_accuracy": fix.accuracy(ps), "fixed_cost": fix.mean_cost(ps),
                "fixed_vs_sc": fix.versus(self.sc, ps),
                "fixed_vs_greedy": fix.versus(self.greedy, ps),
                "policy_vs_fixed": pol.versus(fix, ps)})
        return out

    def cheapest_non_inferior(self) -> float | None:
        """The cheapest budget whose policy is non-inferior to SC@n on these problems."""
        return next((float(r["budget"]) for r in self.rows() if r["vs_sc"].non_inferior),
                    None)

    def greedy_ok(self) -> list[tuple[float, Paired, bool]]:
        """For each budget at or above greedy decoding's mean cost: the policy's paired
        difference against greedy and whether it is non-inferior."""
        floor = self.greedy.mean_cost(self.problems)
        return [(r["budget"], r["vs_greedy"], r["vs_greedy"].non_inferior)
                for r in self.rows() if r["budget"] >= floor]

    def versus_greedy(self) -> list[str]:
        """Per budget, the policy against greedy decoding on the held-out folds: at or above
        greedy's mean cost whether it is non-inferior, below it what accuracy the saving
        costs (the paired difference and its interval)."""
        ps = self.problems
        floor = self.greedy.mean_cost(ps)
        out = []
        for r in self.rows():
            head = f"budget {r['budget']:g}: policy - greedy {r['vs_greedy']}"
            if r["budget"] >= floor:
                verdict = "non-inferior" if r["vs_greedy"].non_inferior else "NOT non-inferior"
                out.append(f"{head}, {verdict} (at or above greedy's cost)")
            else:
                saved = 1 - r["cost"] / floor if floor else 0.0
                loss = r["vs_greedy"]
                out.append(f"{head}: below greedy's cost; saving {saved:.0%} of greedy's "
                           f"{self.unit} costs {-loss.diff:.3f} accuracy "
                           f"[{-loss.hi:.3f}, {-loss.lo:.3f}]")
        return out


def _draw_of(policy: Policy) -> str:
    return draw_spec(policy.prober_spec) or ""


def _point_cost(point: Any, unit: Unit) -> float:
    if unit == "tokens":
        return float(point.generated_tokens + point.verifier_tokens)
    return float(getattr(point, unit))


def complete_problems(records: Sequence[dict[str, Any]]) -> list[str]:
    """Problems that have every pool and every other run the records hold for any problem."""
    pooled = pooled_records(records)
    draws = {d for sets in pooled.values() for by in sets for d in by}
    return sorted(p for p, sets in pooled.items() if any(set(by) == draws for by in sets))


@dataclass
class CrossFitter:
    """Cross-fits one fit rule on one set of records (see the module docstring)."""

    records: Sequence[dict[str, Any]]
    fit: Fit
    unit: Unit = "tokens"
    sc_n: int = 16
    scored: Outcomes = field(default_factory=Outcomes)
    prep: Prepared | None = None

    def prepared(self) -> Prepared:
        """The records, read once."""
        if self.prep is None:
            self.prep = Prepared(self.records)
        return self.prep

    def fold(self, train: Sequence[str], held: Sequence[str], budgets: Sequence[float],
             inner: int) -> FoldResult:
        """Fit everything on ``train``, score it on ``held``."""
        policy = self.fit(train, budgets)
        draw = _draw_of(policy)
        prep = self.prepared()
        train_insts = prep.instances(train, policy.probe_k, draw)
        held_insts = prep.instances(held, policy.probe_k, draw)
        sc_options, greedy_options = baseline_choices(train_insts, self.sc_n)
        if not sc_options or not greedy_options:
            raise ValueError(f"the records need a sampling pool of at least {self.sc_n} "
                             "samples and a greedy decoding run (single at temperature 0) on "
                             "every problem")
        out = FoldResult(policy={}, fixed={},
                         sc=self.score(held_insts, best_on(train_insts, sc_options,
                                                           self.scored)),
                         greedy=self.score(held_insts, best_on(train_insts, greedy_options,
                                                               self.scored)),
                         chosen_budget=None, features="+".join(policy.features))
        fixed_options = choices(train_insts, 0)
        for b in budgets:
            out.policy[b] = Scores()
            for point in replay(policy, prep, held, budget_key(b)):
                out.policy[b].add(point.problem, point.correct, _point_cost(point, self.unit))
            fixed = best_fixed(train_insts, fixed_options, b, self.unit, self.scored)
            out.fixed[b] = self.score(held_insts, fixed)
        if inner > 1:
            nested = self.run(train, folds=inner, budgets=budgets, inner=0)
            out.chosen_budget = nested.cheapest_non_inferior()
        return out

    def score(self, insts: Sequence[Instance], choice: Choice) -> Scores:
        """``choice`` run on each of ``insts`` without a probe."""
        scores = Scores()
        for inst in insts:
            correct, usage = self.scored(inst, choice)
            scores.add(inst.problem, correct, unit_cost(usage, self.unit), choice.label)
        return scores

    def run(self, problems: Sequence[str], *, folds: int = 5, seed: int = 0,
            budgets: Sequence[float] | None = None, inner: int = 4) -> CrossFit:
        """Cross-fit over ``problems``; ``inner`` folds choose each outer fold's headline
        budget on its training problems (0: no choice, the largest budget is headlined)."""
        if folds < 2:
            raise ValueError("cross-fitting needs at least 2 folds")
        groups = assign_folds(problems, folds, seed)
        if min(len(g) for g in groups) < 2:
            raise ValueError(f"{len(problems)} problems are too few for {folds} folds")
        if budgets is None:
            budgets = budget_grid(self.records, problems, self.unit, self.prepared())
        result = CrossFit(problems=sorted(problems), folds=folds, unit=self.unit,
                          budgets=list(budgets), policy={b: Scores() for b in budgets},
                          fixed={b: Scores() for b in budgets}, sc=Scores(), greedy=Scores(),
                          chosen=Scores(), chosen_budgets=[], sc_n=self.sc_n)
        for f, held in enumerate(groups):
            train = [p for g in groups[:f] + groups[f + 1:] for p in g]
            fold = self.fold(train, held, budgets, inner)
            for b in budgets:
                _merge(result.policy[b], fold.policy[b])
                _merge(result.fixed[b], fold.fixed[b])
            _merge(result.sc, fold.sc)
            _merge(result.greedy, fold.greedy)
            result.chosen_budgets.append(fold.chosen_budget)
            result.features.append(fold.features)
            pick = fold.chosen_budget if fold.chosen_budget is not None else max(budgets)
            _merge(result.chosen, fold.policy[pick])
        scored = set(result.sc.correct)
        for b in budgets:
            scored &= set(result.policy[b].correct)
        result.problems = sorted(scored)
        return result


def _merge(into: Scores, part: Scores) -> None:
    into.correct.update(part.correct)
    into.cost.update(part.cost)
    into.picked.update(part.picked)


def report_lines(result: CrossFit) -> list[str]:
    """The cross-fitted comparison as text: the baselines, one row per budget (the policy and
    the best fixed configuration, each against SC@n and greedy decoding) and the headline."""
    ps, n = result.problems, result.sc_n
    sc_cost = result.sc.mean_cost(ps)
    greedy = result.greedy
    unit = "tokens" if result.unit == "tokens" else result.unit
    lines = [
        f"{len(ps)} problems, {result.folds} folds; every choice fitted on training folds, each "
        f"problem scored once while held out; paired 95% bootstrap intervals; non-inferior: "
        f"lower end >= -{MARGIN}",
        f"SC@{n} ({_most(result.sc)}): accuracy {result.sc.accuracy(ps):.3f}, {sc_cost:.0f} "
        f"{unit} per problem",
        f"greedy ({_most(greedy)}): accuracy {greedy.accuracy(ps):.3f}, "
        f"{greedy.mean_cost(ps):.0f} {unit} (share {greedy.mean_cost(ps) / sc_cost:.3f}); "
        f"vs SC@{n} {greedy.versus(result.sc, ps)}",
        f"{'budget':>8} {'policy':>6} {'share':>6} {'vs SC@' + str(n):>24} {'vs greedy':>24}  "
        f"{'fixed':>6} {'share':>6} {'fixed vs SC@' + str(n):>24}  fixed (most folds)"]
    for r in result.rows():
        fixed = result.fixed[r["budget"]]
        lines.append(
            f"{r['budget']:>8g} {r['accuracy']:6.3f} {r['share']:6.3f} {r['vs_sc']!s:>24} "
            f"{r['vs_greedy']!s:>24}  {r['fixed_accuracy']:6.3f} "
            f"{r['fixed_cost'] / sc_cost:6.3f} {r['fixed_vs_sc']!s:>24}  {_most(fixed)}")
    lines += [f"against greedy decoding ({greedy.mean_cost(ps):.0f} {unit}), held out:",
              *(f"  {line}" for line in result.versus_greedy())]
    bad = [b for b, _, ok in result.greedy_ok() if not ok]
    lines.append("at every budget at or above greedy's cost the policy is non-inferior to "
                 "greedy" if not bad else "NOT non-inferior to greedy at budgets "
                 + ", ".join(f"{b:g}" for b in bad))
    if result.features:
        lines.append("difficulty features per fold, chosen on its training folds: "
                     + ", ".join(result.features))
    chosen = ", ".join("none" if b is None else f"{b:g}" for b in result.chosen_budgets)
    lines.append(f"headline budget per fold, chosen by inner cross-fitting on its training "
                 f"folds: {chosen}")
    return lines


def headline(result: CrossFit) -> str:
    """The last line: the share of SC@n's cost at which the policy is non-inferior to SC@n
    (1.0 where it never is), with the paired interval, or why there is no headline."""
    n = result.sc_n
    if not result.enough:
        return (f"share of SC@{n} {result.unit} at which the policy is non-inferior: not "
                f"measured ({len(result.problems)} problems; a headline needs {MIN_PROBLEMS})")
    share, diff = result.share()
    return (f"share of SC@{n} {result.unit} at which the policy is non-inferior: {share:.3f} "
            f"(policy - SC@{n}: {diff})")


def _most(scores: Scores) -> str:
    picks = list(scores.picked.values())
    return max(set(picks), key=picks.count) if picks else "-"


def crossfit_markdown(result: CrossFit) -> list[str]:
    """The cross-fitted comparison as markdown: the protocol, a row per budget, the headline."""
    ps, n = result.problems, result.sc_n
    sc_cost = result.sc.mean_cost(ps)
    md = [f"{len(ps)} problems in {result.folds} folds: every choice is fitted on the training "
          f"folds and each problem is scored once while held out. Intervals are paired 95% "
          f"bootstrap intervals over problems; non-inferior means the lower end is at least "
          f"-{MARGIN}. SC@{n} ({_most(result.sc)}): {result.sc.accuracy(ps):.3f} at "
          f"{sc_cost:.0f} {result.unit}; greedy ({_most(result.greedy)}): "
          f"{result.greedy.accuracy(ps):.3f} at {result.greedy.mean_cost(ps):.0f}.", "",
          f"| budget | policy accuracy | {result.unit} | share of SC@{n} | vs SC@{n} | vs greedy "
          f"| best fixed configuration | its accuracy | its share |", "|" + "---|" * 9]
    for r in result.rows():
        fixed = result.fixed[r["budget"]]
        md.append(f"| {r['budget']:g} | {r['accuracy']:.3f} | {r['cost']:.0f} | "
                  f"{r['share']:.3f} | {r['vs_sc']} | {r['vs_greedy']} | "
                  f"{_most(fixed).replace('|', chr(92) + '|')} | {r['fixed_accuracy']:.3f} | "
                  f"{r['fixed_cost'] / sc_cost:.3f} |")
    md += ["", f"Against greedy decoding ({result.greedy.mean_cost(ps):.0f} {result.unit} per "
           "problem), held out:", "", *(f"- {line}" for line in result.versus_greedy())]
    return [*md, "", headline(result) + "."]

