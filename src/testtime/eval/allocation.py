"""Per budget, which configuration each difficulty bin runs.

    per bin: each configuration's accuracy (shrunk toward all problems', ``prior``) and cost
    probed row := the knapsack over bins (Lagrangian relaxation), probe paid on every problem
    plain row  := one configuration for every problem, no probe
    at budgets at or above greedy decoding's cost:
        a bin runs something other than greedy only where the training problems in it show
        it beats greedy (a one-sided 95% bound on the paired difference above 0); a plain
        row other than greedy only where all training problems show it
    the row with the higher training accuracy (ties: the plain row, then the cheaper)

Everything here reads training problems only: the matrices hold their outcomes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Z_BEATS = 1.645
"""One-sided 95% normal bound: how sure the training problems must be that a configuration
beats greedy decoding before a policy may run it instead at or above greedy's cost."""
GREEDY_SLACK = 0.1
"""A budget within this share below greedy's training mean cost still buys greedy decoding:
the budget grid's greedy point is measured on all problems, a fold's training mean differs by a
few percent."""


@dataclass(frozen=True)
class Scored:
    """Training problems × configurations: expected correctness and cost after the probe
    (``acc``, ``cost``, the probe's cost included) and without a probe (``acc0``, ``cost0``)."""

    acc: np.ndarray
    cost: np.ndarray
    acc0: np.ndarray
    cost0: np.ndarray

    def rows(self, keep: np.ndarray) -> Scored:
        """The same for the problems ``keep`` selects."""
        return Scored(self.acc[keep], self.cost[keep], self.acc0[keep], self.cost0[keep])


def beats(acc: np.ndarray, greedy: int) -> np.ndarray:
    """Per configuration (column), whether the problems (rows) show it beats column
    ``greedy``: the one-sided 95% lower bound of the mean paired difference is above 0."""
    n = acc.shape[0]
    if n < 2:
        return np.zeros(acc.shape[1], dtype=bool)
    d = acc - acc[:, [greedy]]
    mean = d.mean(axis=0)
    se = d.std(axis=0, ddof=1) / np.sqrt(n)
    return mean - Z_BEATS * se > 0


def bin_tables(scored: Scored, bins_of: np.ndarray, bins: int, prior: float
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per bin (1..bins) and configuration: accuracy shrunk toward all problems' as if
    ``prior`` more problems had scored it, mean cost, and the bin's share of problems (an
    empty bin borrows all problems' figures)."""
    overall = scored.acc.mean(axis=0)
    acc = np.empty((bins, scored.acc.shape[1]))
    cost = np.empty_like(acc)
    weights = np.empty(bins)
    for b in range(bins):
        members = bins_of == b + 1
        rows = members if members.any() else np.ones_like(members)
        acc[b] = (scored.acc[rows].sum(axis=0) + prior * overall) / (rows.sum() + prior)
        cost[b] = scored.cost[rows].mean(axis=0)
        weights[b] = members.mean()
    return acc, cost, weights


def knapsack(acc: np.ndarray, cost: np.ndarray, weights: np.ndarray, budget: float,
             allowed: np.ndarray) -> tuple[float, np.ndarray] | None:
    """The per-bin picks (among ``allowed``) with the highest weighted accuracy whose
    weighted cost fits ``budget``, by a sweep of the cost's Lagrange multiplier (ties: the
    cheaper); None when nothing fits."""
    positive = cost[allowed & (cost > 0)]
    top = 1.0 / max(float(positive.min()) if positive.size else 1.0, 1e-9)
    lams = np.array([0.0, *np.geomspace(top * 1e-4, top, 300)])[:, None, None]
    value = np.where(allowed, acc, -np.inf)[None] - lams * cost[None]
    ties = value >= value.max(axis=2, keepdims=True) - 1e-12
    picks = np.where(ties, cost[None], np.inf).argmin(axis=2)  # the cheaper of the maxima
    rows = np.arange(acc.shape[0])
    accs = acc[rows, picks] @ weights
    costs = cost[rows, picks] @ weights
    fits = np.flatnonzero(costs <= budget + 1e-9)
    if not fits.size:
        return None
    best = max(fits, key=lambda i: (accs[i], -costs[i]))
    return float(accs[best]), picks[best]


def plan_rows(scored: Scored, bins_of: np.ndarray, bins: int, budgets: Sequence[float],
              prior: float, greedy: int | None) -> list[list[int]]:
    """Per budget, the configuration (column) each bin runs; a row naming one column for
    every bin runs it without a probe. ``greedy`` is greedy decoding's column (None: the
    records have none, and no budget is held to it)."""
    acc_t, cost_t, weights = bin_tables(scored, bins_of, bins, prior)
    plain_acc, plain_cost = scored.acc0.mean(axis=0), scored.cost0.mean(axis=0)
    everything = np.ones_like(acc_t, dtype=bool)
    if greedy is not None:
        in_bin = np.array([beats(scored.acc[bins_of == b + 1], greedy) for b in range(bins)])
        held = in_bin | (np.arange(acc_t.shape[1]) == greedy)
        plain_ok = beats(scored.acc0, greedy)
        floor = float(plain_cost[greedy]) * (1 - GREEDY_SLACK)
    rows = []
    for budget in budgets:
        if greedy is not None and budget >= floor:
            allowed = held
            plain = [greedy, *np.flatnonzero(plain_ok & (plain_cost <= budget))]
        else:
            allowed = everything
            plain = list(np.flatnonzero(plain_cost <= budget))
        probed = knapsack(acc_t, cost_t, weights, float(budget), allowed)
        if not plain and probed is None:
            rows.append([int(plain_cost.argmin())] * bins)
            continue
        best = max(plain, key=lambda j: (plain_acc[j], -plain_cost[j])) if plain else None
        if probed is not None and (best is None or probed[0] > plain_acc[best] + 1e-12):
            rows.append([int(j) for j in probed[1]])
        else:
            rows.append([int(best)] * bins)  # type: ignore[arg-type]
    return rows
