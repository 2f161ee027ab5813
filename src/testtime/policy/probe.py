"""The probe's statistics: how much a few samples agree, or how well a verifier scores them."""

from __future__ import annotations

from collections.abc import Sequence

from testtime.answers import extract_answer, group_answers
from testtime.chat import split_reasoning
from testtime.types import Candidate


def agreement(answers: Sequence[str | None]) -> float:
    """Share of samples in the most common answer class (0 when none has an answer)."""
    classes = [c for c in group_answers(list(answers)) if c is not None]
    if not answers or not classes:
        return 0.0
    return max(classes.count(c) for c in set(classes)) / len(answers)


def probe_answers(candidates: Sequence[Candidate]) -> list[str | None]:
    """The answers the agreement probe compares: the candidates' own, or, when none has one
    (a free-text chat reply marks no final answer), the last number of each reply."""
    if any(c.answer is not None for c in candidates):
        return [c.answer for c in candidates]
    return [extract_answer(split_reasoning(c.text)[1] or c.text) for c in candidates]


def mean_score(scores: Sequence[float | None]) -> float:
    """Mean verifier score of the probe samples."""
    vals = [s for s in scores if s is not None]
    return sum(vals) / len(vals) if vals else 0.0


def measure(statistic: str, probe: Sequence[Candidate]) -> float:
    """The probe statistic of ``probe``: its mean verifier score (``score``; the samples
    must be scored) or how much its answers agree (``agreement``)."""
    if statistic == "score":
        return mean_score([c.score.value if c.score else None for c in probe])
    return agreement(probe_answers(probe))
