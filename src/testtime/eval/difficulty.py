"""Problem difficulty: oracle bins from the sweep's own pass rates, predicted bins from a probe.

Oracle difficulty follows Snell et al. (2024): a problem's pass rate over all its samples, cut
into quantile bins (1 = easiest). Predicted difficulty needs no answer key: a score combining
the probe's features (agreement and confidence of the first k samples, the prompt's length in
tokens) by a logistic fit of the training problems' pass rates, cut at quantiles of the
training problems' scores. The probe's cost is the cost of those k samples.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import numpy as np

from testtime.eval.curves import SHARED, pool_of, problem_key

RIDGE = 1.0
"""Ridge penalty of the difficulty score's logistic fit, on standardised features."""


def pass_rates(records: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Share of correct candidates per problem, over every record of the sweep."""
    hits: dict[str, list[float]] = {}
    for rec in records:
        for c in rec.get("candidates") or []:
            if c.get("correct") is not None:
                hits.setdefault(problem_key(rec), []).append(float(bool(c["correct"])))
    return {k: float(np.mean(v)) for k, v in hits.items() if v}


def quantile_bins(values: dict[str, float], bins: int, *, easy_high: bool = True
                  ) -> dict[str, int]:
    """Equal-count bins by rank (1 = easiest); ties are ordered by key, so bins are stable."""
    if bins < 1:
        raise ValueError("bins must be at least 1")
    order = sorted(values, key=lambda k: ((-values[k] if easy_high else values[k]), k))
    n = len(order)
    return {k: 1 + (i * bins) // n for i, k in enumerate(order)}


def fit_logistic(x: np.ndarray, y: np.ndarray, *, ridge: float = RIDGE, iters: int = 100
                 ) -> tuple[np.ndarray, float]:
    """Coefficients and intercept of a logistic fit of ``y`` (pass rates in [0, 1]) on the
    columns of ``x``, in ``x``'s own units: Newton steps on the cross-entropy with a ridge
    penalty on the standardised coefficients (a constant column gets coefficient 0)."""
    mu, sd = x.mean(axis=0), x.std(axis=0)
    flat = sd == 0
    z = np.where(flat, 0.0, (x - mu) / np.where(flat, 1.0, sd))
    design = np.column_stack([np.ones(len(z)), z])
    penalty = np.diag([0.0, *([ridge] * z.shape[1])])
    w = np.zeros(design.shape[1])
    w[0] = _logit(float(np.clip(y.mean(), 1e-3, 1 - 1e-3)))
    for _ in range(iters):
        p = 1 / (1 + np.exp(-np.clip(design @ w, -30, 30)))
        grad = design.T @ (p - y) + penalty @ w
        hess = design.T @ (design * (p * (1 - p))[:, None]) + penalty + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    coef = np.where(flat, 0.0, w[1:] / np.where(flat, 1.0, sd))
    return coef, float(w[0] - np.sum(coef * mu))


def _logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


def fold_of(problem: str, folds: int, seed: int = 0) -> int:
    """The fold a problem belongs to: a stable hash of its id, not its position."""
    digest = hashlib.sha256(f"{seed}:{problem}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % folds


def assign_folds(problems: Sequence[str], folds: int, seed: int = 0) -> list[list[str]]:
    """Problems split into ``folds`` groups of near-equal size, in a hashed order."""
    order = sorted(problems, key=lambda p: (fold_of(p, 1 << 30, seed), p))
    return [sorted(order[i::folds]) for i in range(folds)]


def fit_edges(stats: Sequence[float], bins: int) -> list[float]:
    """Cut points (descending) splitting the statistic into at most ``bins`` quantile bins.

    Cuts fall midway between distinct observed values, so a discrete statistic (agreement of
    a few samples) never puts equal values in different bins; fewer bins result when the
    statistic takes fewer values.
    """
    if not stats:
        raise ValueError("no training problems to fit difficulty bins on")
    distinct = sorted(set(stats), reverse=True)
    mids = [(a + b) / 2 for a, b in pairwise(distinct)]
    if len(mids) <= bins - 1:
        return mids
    targets = np.quantile(np.asarray(stats, dtype=float), [1 - j / bins for j in range(1, bins)])
    return sorted({min(mids, key=lambda m: abs(m - t)) for t in targets}, reverse=True)


def sampling_records(records: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per problem, its largest sampling record for each seed (the sample-once pool)."""
    best: dict[tuple[str, Any], dict[str, Any]] = {}
    for rec in records:
        if pool_of(rec["strategy"]) != SHARED or not rec.get("candidates"):
            continue
        g = (problem_key(rec), rec.get("seed"))
        if g not in best or len(rec["candidates"]) > len(best[g]["candidates"]):
            best[g] = rec
    out: dict[str, list[dict[str, Any]]] = {}
    for (prob, _), rec in sorted(best.items(), key=lambda kv: str(kv[0])):
        out.setdefault(prob, []).append(rec)
    return out


def split(problems: Sequence[str], holdout: float, seed: int = 0) -> tuple[list[str], list[str]]:
    """A deterministic train / held-out split by hash of the problem key."""
    def h(p: str) -> float:
        return int(hashlib.sha256(f"{seed}:{p}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF

    held = sorted(p for p in problems if h(p) < holdout)
    return sorted(p for p in problems if h(p) >= holdout), held
