"""Early stopping scored from a sample pool: adaptive-consistency without sampling again.

``early-stop`` (Aggarwal et al., 2023) draws batches from the same sampler as a sampling pool
and stops once the leading answer's posterior passes its threshold. Any order of the pool's
samples is a valid run of it, so its expected accuracy, samples drawn and generated tokens are
means over seeded orders of the pool. Orders keep the probe's samples first: served after a
probe, early-stop's first draws are the probe's samples (``Context.offer``), so the replay
measures exactly what the adaptive strategy runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from testtime.eval.curves import Pool
from testtime.policy import Choice, sampler_options
from testtime.strategies.base import make_strategy
from testtime.strategies.early_stop import EarlyStop, leader_probability

ORDERS = 64
"""Seeded orders of the pool averaged per problem."""
GRID = ((1, 0.8), (1, 0.9), (2, 0.8), (2, 0.9), (4, 0.8), (4, 0.9))
"""(batch, threshold) of the early-stop configurations derived from every pool."""
SAMPLER = ("temperature", "max_tokens", "top_p", "top_k", "min_p", "repeat_penalty")


@dataclass(frozen=True)
class Replay:
    """Expected outcome of one early-stop configuration on one pool: its accuracy, and the
    samples and generated tokens paid for (the probe's included)."""

    accuracy: float
    samples: float
    generated_tokens: float


def early_stop_spec(source: str, max_n: int, batch: int, threshold: float) -> str:
    """The early-stop spec sampling like the pool of ``source`` (so it can be replayed)."""
    opts = [f"max_n={max_n}", f"batch={batch}", f"threshold={threshold:g}"]
    return "early-stop:" + ",".join(opts + sampler_options(source, verifier=False))


def early_stop_choices(source: str, n: int) -> list[Choice]:
    """The early-stop configurations every pool of ``n`` samples from ``source`` replays."""
    return [Choice(spec=early_stop_spec(source, n, b, t)) for b, t in GRID]


def replays(choice: Choice, source: str, n: int) -> bool:
    """Whether ``choice`` is an early-stop that a pool of ``n`` samples of ``source`` replays:
    it samples with the pool's settings and never asks for more than the pool holds."""
    strategy = choice.strategy()
    if not isinstance(strategy, EarlyStop) or strategy.max_n > n:
        return False
    pool = make_strategy(source)
    declared = pool.pooled()
    if declared is None or declared.own_draw:
        return False  # the pool's samples are a kind of their own (a prefill, a tool trace)
    return all(getattr(strategy, key, None) == getattr(pool, key, None) for key in SAMPLER)


@lru_cache(maxsize=4096)
def _leader(a: int, b: int) -> float:
    return leader_probability(a, b)


def pool_orders(n: int, fixed: int, count: int) -> np.ndarray:
    """``count`` seeded orders of n samples (rows), each starting with the first ``fixed``."""
    rng = np.random.default_rng([n, fixed, count])
    rest = np.argsort(rng.random((count, n - fixed)), axis=1) + fixed
    return np.hstack([np.tile(np.arange(fixed), (count, 1)), rest])


def replay_early_stop(pool: Pool, generated: np.ndarray, strategy: EarlyStop, probe_k: int,
                      orders: int = ORDERS) -> Replay:
    """Mean outcome of ``strategy`` over seeded orders of ``pool`` with the probe's samples
    first; ``generated`` holds each sample's generated tokens. It decides on the samples it
    drew, and pays for at least the whole probe (a stop inside the probe wastes the rest)."""
    n, fixed = pool.n, min(probe_k, pool.n)
    order = pool_orders(n, fixed, orders)
    counts = np.cumsum(pool.onehot[order], axis=1)
    top = -np.sort(-counts, axis=2) if counts.shape[2] else np.zeros((orders, n, 1))
    lead = top[:, :, 0].astype(int)
    second = top[:, :, 1].astype(int) if top.shape[2] > 1 else np.zeros_like(lead)
    checks = [*range(strategy.batch, strategy.max_n, strategy.batch), strategy.max_n]
    drawn = np.full(orders, strategy.max_n)
    for r in range(orders):
        for k in checks:
            a, b = lead[r, k - 1], second[r, k - 1]
            if a and _leader(a, b) >= strategy.threshold:
                drawn[r] = k
                break
    paid = np.maximum(drawn, fixed)
    members = _members(order, drawn)
    tokens = (_members(order, paid) * generated[None, :]).sum(axis=1)
    return Replay(float(pool.judge("majority", members).mean()), float(paid.mean()),
                  float(tokens.mean()))


def _members(order: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Per order, membership of its first ``first[r]`` samples."""
    members = np.zeros(order.shape, dtype=bool)
    np.put_along_axis(members, order, np.arange(order.shape[1])[None, :] < first[:, None],
                      axis=1)
    return members
