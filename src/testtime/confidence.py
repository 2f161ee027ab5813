"""Token confidence, once: the per-token scores and the trace measures built from them.

A token's *confidence* (DeepConf, Fu et al., 2025) is ``-mean`` of the logprobs of its top-k
alternatives: a peaked distribution (one likely token, unlikely alternatives) scores high. When
a completion carries no top logprobs, the sampled token's own logprob stands in. A trace's
confidence is one of these measures over its tokens' scores:

- ``mean``: the mean over all tokens;
- ``lowest-window``: the lowest mean over sliding windows (DeepConf's lowest group confidence);
- ``bottom``: the mean of the lowest ``q`` share of window means (DeepConf's bottom-10%);
- ``tail``: the mean of the last window.

The confidence verifier, ``deepconf`` and ``certainty-probe`` all read their scores here.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Literal

Measure = Literal["mean", "lowest-window", "bottom", "tail"]


def token_confidence(top: Mapping[str, float], k: int | None = None) -> float:
    """``-mean`` logprob of a token's top ``k`` alternatives (all given when ``k`` is None)."""
    values = sorted(top.values(), reverse=True)[:k] if k else list(top.values())
    if not values:
        return 0.0
    return -sum(max(v, -1e4) for v in values) / len(values)


def token_entropy(top: Mapping[str, float]) -> float:
    """Entropy (nats) of a token's top-k alternatives, renormalised to sum to one."""
    probs = [math.exp(v) for v in top.values() if v > -1e4]
    total = sum(probs)
    if total <= 0:
        return 0.0
    return -sum(p / total * math.log(p / total) for p in probs if p > 0)


def token_scores(logprobs: Sequence[float] | None,
                 tops: Sequence[Mapping[str, float]] | None, k: int | None = None) -> list[float]:
    """Each token's confidence: from its top logprobs when known, else its own logprob."""
    if tops:
        return [token_confidence(t, k) for t in tops]
    return [float(x) for x in logprobs or ()]


def mean_probability(logprobs: Sequence[float] | None) -> float:
    """The geometric-mean probability of a completion's tokens (0 when it has none)."""
    if not logprobs:
        return 0.0
    return math.exp(sum(logprobs) / len(logprobs))


def window_means(scores: Sequence[float], window: int) -> list[float]:
    """Mean of every sliding window of ``window`` scores (one window if shorter)."""
    if not scores:
        return []
    w = min(window, len(scores))
    acc = sum(scores[:w])
    out = [acc / w]
    for i in range(w, len(scores)):
        acc += scores[i] - scores[i - w]
        out.append(acc / w)
    return out


def bottom_mean(values: Sequence[float], q: float) -> float:
    """Mean of the lowest ``q`` share of ``values`` (at least one value)."""
    ordered = sorted(values)
    take = max(1, math.ceil(len(ordered) * q))
    return sum(ordered[:take]) / take


def trace_confidence(scores: Sequence[float], measure: Measure = "lowest-window",
                     window: int = 2048, q: float = 0.1) -> float:
    """One trace's confidence by ``measure`` over its token scores (0 for an empty trace)."""
    if not scores:
        return 0.0
    if measure == "mean":
        return sum(scores) / len(scores)
    if measure == "tail":
        tail = scores[-window:]
        return sum(tail) / len(tail)
    means = window_means(scores, window)
    return min(means) if measure == "lowest-window" else bottom_mean(means, q)


class SlidingMean:
    """The mean of the last ``window`` scores pushed, kept in O(1) per token."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.values: deque[float] = deque()
        self.total = 0.0
        self.count = 0

    def push(self, score: float) -> float | None:
        """Add a score; the window's mean once it is full, else None."""
        self.values.append(score)
        self.total += score
        self.count += 1
        if len(self.values) > self.window:
            self.total -= self.values.popleft()
        return self.total / self.window if len(self.values) == self.window else None


def first_below(scores: Sequence[float], window: int, threshold: float) -> int | None:
    """The token count at which a full window's mean first falls below ``threshold``.

    The same rule an online watcher applies with :class:`SlidingMean` token by token, so a
    trace recorded whole can be replayed to where it would have been stopped.
    """
    watch = SlidingMean(window)
    for i, score in enumerate(scores):
        mean = watch.push(score)
        if mean is not None and mean < threshold:
            return i + 1
    return None


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct``-th percentile of ``values`` (linear interpolation, like numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    pos = (len(ordered) - 1) * pct / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)
