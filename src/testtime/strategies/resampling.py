"""Softmax weights, diversity (normalised entropy), annealing and multinomial resampling."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence


def softmax(values: Sequence[float], temperature: float = 1.0) -> list[float]:
    """exp(v / temperature) normalised to sum to one (numerically stable)."""
    if not values:
        return []
    scaled = [v / temperature for v in values]
    m = max(scaled)
    exps = [math.exp(s - m) for s in scaled]
    total = sum(exps)
    return [e / total for e in exps]


def normalized_entropy(weights: Sequence[float]) -> float:
    """Entropy of ``weights`` divided by log(len): 1 for uniform, 0 for one particle."""
    if len(weights) < 2:
        return 1.0
    h = -sum(w * math.log(w) for w in weights if w > 0)
    return h / math.log(len(weights))


def anneal(values: Sequence[float], temperature: float, floor: float) -> tuple[list[float], float]:
    """Softmax weights tempered by the largest β in [0, 1] whose entropy is at least ``floor``.

    β = 1 is the plain softmax; β → 0 flattens it to uniform (entropy 1). Returns the weights
    and β, found by bisection (entropy falls monotonically as β grows).
    """
    weights = softmax(values, temperature)
    if normalized_entropy(weights) >= floor:
        return weights, 1.0
    lo, hi = 0.0, 1.0
    for _ in range(40):
        mid = (lo + hi) / 2
        if normalized_entropy(softmax([v * mid for v in values], temperature)) >= floor:
            lo = mid
        else:
            hi = mid
    return softmax([v * lo for v in values], temperature), lo


def resample(weights: Sequence[float], k: int, rng: random.Random) -> list[int]:
    """Indices of ``k`` draws with replacement, each index chosen with its weight."""
    return rng.choices(range(len(weights)), weights=weights, k=k)
