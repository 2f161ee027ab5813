"""Per-configuration metrics with bootstrap confidence intervals over problems."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from testtime.eval.curves import Point

METRICS = ("correct", "generated_tokens", "prompt_tokens", "cached_tokens", "verifier_tokens",
           "calls", "flops", "memory_bytes", "seconds", "stopped_traces", "stopped_tokens")


def bootstrap_ci(values: Sequence[float], *, reps: int = 1000, alpha: float = 0.05,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean, resampling values with replacement."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return float("nan"), float("nan")
    if x.size == 1 or np.all(x == x[0]):
        return float(x[0]), float(x[0])
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(reps, x.size))].mean(axis=1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def paired_permutation_p(a: Sequence[float], b: Sequence[float], *, reps: int = 20000,
                         seed: int = 0) -> float:
    """Two-sided p-value that paired values ``a`` and ``b`` have the same mean difference of 0.

    A sign-flip permutation test on the per-pair differences: no assumption about their
    distribution, right for per-problem accuracies. 1.0 when every pair is equal.
    """
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if d.size == 0 or not np.any(d):
        return 1.0
    observed = abs(d.mean())
    signs = np.random.default_rng(seed).choice((-1.0, 1.0), size=(reps, d.size))
    flipped = np.abs((signs * d).mean(axis=1))
    return float((1 + np.count_nonzero(flipped >= observed - 1e-12)) / (reps + 1))


@dataclass
class ConfigStats:
    """Means (and 95% intervals) of one configuration's per-problem metrics."""

    config: str
    family: str
    k: int
    backend: str
    budget: str | None
    problems: int
    mean: dict[str, float] = field(default_factory=dict)
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def accuracy(self) -> float:
        """Mean expected correctness."""
        return self.mean["correct"]

    @property
    def label(self) -> str:
        """Configuration name with budget and backend where they matter."""
        out = self.config
        if self.budget:
            out += f" [{self.budget}]"
        return out


def per_problem(points: Sequence[Point]) -> dict[str, dict[str, float]]:
    """Each problem's metrics averaged over seeds."""
    groups: dict[str, list[Point]] = {}
    for p in points:
        groups.setdefault(p.problem, []).append(p)
    return {prob: {m: float(np.mean([getattr(p, m) for p in ps])) for m in METRICS}
            for prob, ps in groups.items()}


def summarise_points(points: Sequence[Point], *, reps: int = 1000,
                     problems: set[str] | None = None) -> list[ConfigStats]:
    """One ConfigStats per (backend, budget, configuration), over ``problems`` if given."""
    groups: dict[tuple[str, str | None, str], list[Point]] = {}
    for p in points:
        if problems is None or p.problem in problems:
            groups.setdefault((p.backend, p.budget, p.config), []).append(p)
    out: list[ConfigStats] = []
    for (backend, budget, config), ps in groups.items():
        rows = per_problem(ps)
        stats = ConfigStats(config=config, family=ps[0].family, k=ps[0].k, backend=backend,
                            budget=budget, problems=len(rows))
        for m in METRICS:
            vals = [r[m] for r in rows.values()]
            stats.mean[m] = float(np.mean(vals))
            stats.ci[m] = bootstrap_ci(vals, reps=reps, seed=len(out))
        out.append(stats)
    out.sort(key=lambda s: (s.backend, s.budget or "", s.family, s.k, s.config))
    return out


def pareto(stats: Sequence[ConfigStats], cost: str = "generated_tokens") -> list[ConfigStats]:
    """Configurations no other beats on both accuracy and ``cost``, cheapest first."""
    ordered = sorted(stats, key=lambda s: (s.mean[cost], -s.accuracy))
    front: list[ConfigStats] = []
    for s in ordered:
        if not front or s.accuracy > front[-1].accuracy:
            front.append(s)
    return front
