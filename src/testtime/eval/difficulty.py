"""Problem difficulty: oracle bins from the sweep's own pass rates, predicted bins from a probe.

Oracle difficulty follows Snell et al. (2024): a problem's pass rate over all its samples, cut
into quantile bins (1 = easiest). Predicted difficulty needs no answer key: the agreement
among the first k samples (or their mean verifier score), cut at quantiles fitted on
training problems. The probe's cost is the cost of those k samples.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import numpy as np

from testtime.eval.curves import SAMPLING, problem_key, strategy_name
from testtime.policy import agreement, mean_score


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


def probe_statistic(candidates: Sequence[dict[str, Any]], k: int, statistic: str) -> float:
    """The probe's statistic over the first k candidates of a stored record."""
    head = list(candidates[:k])
    if statistic == "score":
        return mean_score([c.get("score") for c in head])
    return agreement([c.get("answer") for c in head])


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
        if strategy_name(rec["strategy"]) not in SAMPLING or not rec.get("candidates"):
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
