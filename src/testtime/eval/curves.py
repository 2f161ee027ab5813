"""Sample once, score many: majority@k, weighted@k, best-of-k and pass@k for every k ≤ N.

A sampling strategy's record holds N independent candidates, each graded and (when a verifier
ran) scored. Any k of them are a valid run of the same strategy with n=k, so the expected
accuracy at k is the mean over k-subsets: exact when there are few subsets, else a seeded Monte
Carlo estimate; pass@k uses the unbiased estimator of Chen et al. (2021). The cost at k scales
the sampled part of the record's usage by k/N; the prompt is counted once, as it is evaluated
once per request.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from math import comb
from typing import Any

import numpy as np

import testtime.strategies  # noqa: F401  (registers the strategies whose pools are read here)
from testtime.answers import group_answers, normalize
from testtime.eval.metrics import pass_at_k
from testtime.policy.pools import draw_spec, pools
from testtime.registry import SpecError

FAMILIES = ("majority", "weighted", "best-of", "pass")
"""How one pool of plain samples is scored at every k (the shared draw's families)."""
SHARED = ""
"""The pool of plain samples, which every vote family scores."""


@dataclass(frozen=True)
class Point:
    """One problem under one (possibly derived) configuration: expected outcome and cost."""

    problem: str
    config: str
    family: str
    k: int
    correct: float
    generated_tokens: float
    prompt_tokens: float = 0.0
    cached_tokens: float = 0.0
    verifier_tokens: float = 0.0
    calls: float = 0.0
    flops: float = 0.0
    memory_bytes: float = 0.0
    seconds: float = 0.0
    stopped_traces: float = 0.0
    stopped_tokens: float = 0.0
    seed: int = 0
    backend: str = ""
    budget: str | None = None
    derived: bool = False


def problem_key(rec: dict[str, Any]) -> str:
    """Identifies a problem across configurations (task and problem id)."""
    return f"{rec.get('task') or ''}/{rec['problem_id']}"


def strategy_name(spec: str) -> str:
    """The registered name at the start of a strategy spec."""
    return spec.partition(":")[0].strip()


def pool_of(spec: str) -> str | None:
    """Which pool a record of ``spec`` samples: :data:`SHARED` for plain samples, a family of
    its own for a strategy that draws its own kind (``no-thinking``, ``tool-integrated``), as
    the strategies declare; None for a strategy that does not pool as configured."""
    pool = pools().get(strategy_name(spec))
    try:
        if pool is None or draw_spec(spec) is None:
            return None
    except SpecError:  # a record of a spec this version no longer builds
        return None
    return pool.family if pool.own_draw else SHARED


def direct_point(rec: dict[str, Any]) -> Point:
    """The point a stored record stands for as it ran."""
    u = rec.get("usage") or {}
    return Point(problem=problem_key(rec), config=rec["strategy"], family="run",
                 k=len(rec.get("candidates") or []), correct=float(bool(rec.get("correct"))),
                 generated_tokens=u.get("generated_tokens", 0),
                 prompt_tokens=u.get("prompt_tokens", 0), cached_tokens=u.get("cached_tokens", 0),
                 verifier_tokens=u.get("verifier_tokens", 0), calls=u.get("calls", 0),
                 flops=u.get("flops", 0.0), memory_bytes=u.get("memory_bytes", 0.0),
                 seconds=u.get("seconds", 0.0), stopped_traces=u.get("stopped_traces", 0),
                 stopped_tokens=u.get("stopped_tokens", 0), seed=int(rec.get("seed") or 0),
                 backend=rec.get("backend") or "", budget=rec.get("budget"))


class Pool:
    """A record's candidates reduced to arrays, so many subsets are judged at once."""

    def __init__(self, candidates: Sequence[dict[str, Any]]) -> None:
        answers = [c.get("answer") for c in candidates]
        groups = group_answers(answers)
        n = len(candidates)
        n_classes = max((g for g in groups if g is not None), default=-1) + 1
        self.n = n
        self.correct = np.array([bool(c.get("correct")) for c in candidates])
        raw = [c.get("score") for c in candidates]
        self.scored = n > 0 and all(s is not None for s in raw)
        self.scores = np.array([float(s or 0.0) for s in raw])
        self.has_answer = np.array([g is not None for g in groups])
        self.onehot = np.zeros((n, n_classes))
        class_correct = np.zeros(n_classes, dtype=bool)
        keys: dict[int, str] = {}
        for i, (g, a) in enumerate(zip(groups, answers, strict=True)):
            if g is None or a is None:
                continue
            self.onehot[i, g] = 1.0
            class_correct[g] |= bool(self.correct[i])
            keys[g] = min(keys.get(g, normalize(a)), normalize(a))
        self.class_correct = class_correct
        order = sorted(keys, key=lambda g: keys[g])
        self.rank = np.zeros(n_classes)
        for r, g in enumerate(order):
            self.rank[g] = r

    @classmethod
    def of(cls, candidates: Sequence[dict[str, Any]]) -> Pool:
        """Build a pool from a record's candidates (once per distinct pool: grouping answers
        by equivalence is the costly part of every fit)."""
        return _pool(tuple((c.get("answer"), bool(c.get("correct")), c.get("score"))
                           for c in candidates))

    def judge(self, family: str, mask: np.ndarray) -> np.ndarray:
        """Correctness of ``family`` on each subset (rows of a boolean membership mask).

        Votes break ties like ``tally``: total weight, then count, then smallest answer.
        """
        m = mask.astype(float)
        if family == "best-of":
            key = self.has_answer * 4.0 + self.scores - np.arange(self.n) * 1e-9
            chosen = np.argmax(np.where(mask, key, -np.inf), axis=1)
            return np.asarray(self.correct[chosen])
        if self.onehot.shape[1] == 0:
            return np.zeros(len(mask), dtype=bool)
        weights = self.scores if family == "weighted" and self.scored else np.ones(self.n)
        totals = m @ (self.onehot * weights[:, None])
        counts = m @ self.onehot
        present = counts > 0
        totals = np.where(present, totals, -np.inf)
        top = totals >= totals.max(axis=1, keepdims=True) - 1e-12
        counts = np.where(top, counts, -1.0)
        top &= counts >= counts.max(axis=1, keepdims=True)
        winner = np.argmin(np.where(top, self.rank, np.inf), axis=1)
        return np.asarray(self.class_correct[winner] & present.any(axis=1))


@lru_cache(maxsize=65536)
def _pool(key: tuple[tuple[str | None, bool, float | None], ...]) -> Pool:
    return Pool([{"answer": a, "correct": c, "score": s} for a, c, s in key])


def subset_mask(n: int, k: int, rng: np.random.Generator, limit: int,
                fixed: int = 0) -> np.ndarray:
    """Membership rows: the first ``fixed`` items plus every, or ``limit`` random, choices of
    ``k - fixed`` of the rest (all of them when there are at most ``limit``)."""
    rest, extra = n - fixed, k - fixed
    if extra <= 0:
        picks = np.zeros((1, 0), dtype=int)
    elif comb(rest, extra) <= limit:
        picks = np.array(list(itertools.combinations(range(fixed, n), extra)), dtype=int)
    else:
        picks = np.argsort(rng.random((limit, rest)), axis=1)[:, :extra] + fixed
    mask = np.zeros((len(picks), n), dtype=bool)
    mask[:, :fixed] = True
    np.put_along_axis(mask, picks, True, axis=1)
    return mask


def expected_at_k(pool: Pool, family: str, k: int, *, samples: int = 512,
                  seed: int = 0) -> float:
    """Expected correctness of ``family`` with k of the pool's candidates."""
    if family == "pass":
        return pass_at_k(pool.n, int(pool.correct.sum()), k)
    rng = np.random.default_rng([seed, k, FAMILIES.index(family)])
    return float(pool.judge(family, subset_mask(pool.n, k, rng, samples)).mean())


def default_ks(n: int) -> list[int]:
    """Powers of two up to n, and n itself."""
    ks = [1 << i for i in range(n.bit_length()) if (1 << i) <= n]
    return sorted(set([*ks, n]))


def scaled(base: Point, k: int, n: int, rec: dict[str, Any]) -> Point:
    """The cost of using k of n candidates: sampled tokens scale, the prompt is paid once."""
    cands = rec.get("candidates") or []
    gen = sum(c.get("generated_tokens", 0) for c in cands)
    frac = k / n
    new_prompt = max(base.prompt_tokens - base.cached_tokens, 0)
    work = new_prompt + gen
    work_frac = (new_prompt + gen * frac) / work if work else frac
    return replace(base, k=k, generated_tokens=gen * frac,
                   verifier_tokens=base.verifier_tokens * frac, flops=base.flops * work_frac,
                   memory_bytes=base.memory_bytes * work_frac, seconds=base.seconds * work_frac,
                   stopped_traces=base.stopped_traces * frac,
                   stopped_tokens=base.stopped_tokens * frac, derived=True)


def derived_points(records: Sequence[dict[str, Any]], ks: Sequence[int] | None = None,
                   ) -> list[Point]:
    """Curve points for every family and k from the largest run of plain samples of each
    problem, and ``family@k`` (voted by majority) from the largest run of each pool of its own
    kind (no-thinking answers, tool-integrated traces)."""
    largest: dict[tuple[Any, ...], dict[str, Any]] = {}
    kinds: dict[str, str | None] = {}
    for rec in records:
        spec = rec["strategy"]
        if spec not in kinds:
            kinds[spec] = pool_of(spec)
        if kinds[spec] is None or not rec.get("candidates") or rec.get("budget_exhausted"):
            continue
        group = (kinds[spec], problem_key(rec), rec.get("seed"), rec.get("backend"),
                 rec.get("budget"))
        if group not in largest or len(rec["candidates"]) > len(largest[group]["candidates"]):
            largest[group] = rec
    out = []
    for (kind, *_), rec in largest.items():
        cands = rec["candidates"]
        n = len(cands)
        pool = Pool.of(cands)
        base = direct_point(rec)
        families = [kind] if kind != SHARED else [
            f for f in FAMILIES if pool.scored or f not in SCORED]
        for k in ks or default_ks(n):
            if k > n:
                continue
            cost = scaled(base, k, n, rec)
            for family in families:
                vote = family if kind == SHARED else "majority"
                p = expected_at_k(pool, vote, k, seed=base.seed)
                out.append(replace(cost, family=family, config=f"{family}@{k}", correct=p))
    return out


SCORED = {"weighted", "best-of"}


def all_points(records: Sequence[dict[str, Any]]) -> list[Point]:
    """Direct points of every record plus the derived curves."""
    return [direct_point(r) for r in records] + derived_points(records)
