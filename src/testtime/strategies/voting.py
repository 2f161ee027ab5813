"""Votes over candidates' answers, grouping equivalent answers together."""

from __future__ import annotations

from collections.abc import Sequence

from testtime.answers import group_answers, normalize
from testtime.types import Candidate


def tally(candidates: Sequence[Candidate],
          weights: Sequence[float] | None = None) -> list[tuple[str, float, int]]:
    """(representative answer, total weight, count) per answer class, best first.

    Candidates without an answer cast no vote. Ties are broken by count, then by the smallest
    normalised answer, so the outcome does not depend on the order samples arrived in.
    """
    ws = list(weights) if weights is not None else [1.0] * len(candidates)
    classes = group_answers([c.answer for c in candidates])
    totals: dict[int, list[float]] = {}
    reps: dict[int, str] = {}
    for cls, c, w in zip(classes, candidates, ws, strict=True):
        if cls is None or c.answer is None:
            continue
        acc = totals.setdefault(cls, [0.0, 0])
        acc[0] += w
        acc[1] += 1
        key = normalize(c.answer)
        if cls not in reps or key < normalize(reps[cls]):
            reps[cls] = c.answer
    rows = [(reps[k], v[0], int(v[1])) for k, v in totals.items()]
    rows.sort(key=lambda r: (-r[1], -r[2], normalize(r[0])))
    return rows


def vote(candidates: Sequence[Candidate],
         weights: Sequence[float] | None = None) -> tuple[str | None, dict[str, float]]:
    """The winning answer (None if no candidate has one) and the votes per answer."""
    rows = tally(candidates, weights)
    votes = {answer: weight for answer, weight, _ in rows}
    return (rows[0][0] if rows else None), votes
