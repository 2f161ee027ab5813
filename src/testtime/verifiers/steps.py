"""Step segmentation and step-score aggregation shared by every process verifier and search."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal, get_args

StepMode = Literal["blank", "step", "line"]
Aggregation = Literal["min", "last", "product", "mean"]

STEP_MODES: tuple[str, ...] = get_args(StepMode)
AGGREGATIONS: tuple[str, ...] = get_args(Aggregation)

_STEP_HEADER = re.compile(r"(?im)^[ \t]*(?:\*\*)?step[ \t]*\d+[ \t]*(?:\*\*)?[ \t]*[:.)]")
_BLANK = re.compile(r"\n[ \t]*\n+")


class StepError(ValueError):
    """An unknown segmentation mode or aggregation, or nothing to aggregate."""


def split_steps(text: str, mode: str = "blank") -> list[str]:
    """Split a solution into reasoning steps.

    ``mode`` is ``blank`` (paragraphs separated by blank lines), ``step`` (``Step k:`` headers;
    text before the first header is its own step), ``line`` (one step per non-empty line) or
    any other string, used literally as a custom delimiter (e.g. ``"\\n\\n"`` or ``"ки"``).
    Empty steps are dropped and each step is stripped; the text of every step is kept exactly
    otherwise, so a partial solution splits into the steps written so far.
    """
    if not mode:
        raise StepError("empty step delimiter; use blank, step, line or a literal delimiter")
    if mode == "blank":
        parts = _BLANK.split(text)
    elif mode == "step":
        starts = [m.start() for m in _STEP_HEADER.finditer(text)]
        if not starts or starts[0] != 0:
            starts = [0, *starts]
        parts = [text[a:b] for a, b in zip(starts, [*starts[1:], len(text)], strict=True)]
    elif mode == "line":
        parts = text.splitlines()
    else:
        parts = text.split(mode)
    return [p.strip() for p in parts if p.strip()]


def aggregate(scores: Sequence[float], how: str = "min") -> float:
    """Combine per-step scores into one: ``min``, ``last``, ``product`` or ``mean``."""
    if how not in AGGREGATIONS:
        raise StepError(f"unknown aggregation {how!r}; use one of {', '.join(AGGREGATIONS)}")
    if not scores:
        raise StepError("no step scores to aggregate")
    if how == "min":
        return min(scores)
    if how == "last":
        return scores[-1]
    if how == "product":
        out = 1.0
        for s in scores:
            out *= s
        return out
    return sum(scores) / len(scores)
