"""The probe's difficulty features: how much a few samples agree, how confident the model was
in them, and how long the question is in the model's own tokens.

One function computes them from a probe's answers and scores, whether those come from
stored sweep records (the fit) or from live candidates (serving), so a problem gets the
same features in both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from testtime.answers import extract_answer, group_answers
from testtime.chat import split_reasoning
from testtime.types import Candidate

Feature = Literal["agreement", "confidence", "prompt_tokens"]
FEATURES: tuple[Feature, ...] = ("agreement", "confidence", "prompt_tokens")
"""``agreement``: share of probe samples in the most common answer class; ``confidence``: the
probe samples' mean verifier score (the model's confidence); ``prompt_tokens``: the problem's
own prompt as the model's tokenizer counts it (chat template included)."""


def agreement(answers: Sequence[str | None]) -> float:
    """Share of samples in the most common answer class (0 when none has an answer)."""
    classes = [c for c in group_answers(list(answers)) if c is not None]
    if not answers or not classes:
        return 0.0
    return max(classes.count(c) for c in set(classes)) / len(answers)


def compared_answers(answers: Sequence[str | None], texts: Sequence[str]) -> list[str | None]:
    """The answers the agreement probe compares: the samples' own, or, when none has one (a
    free-text chat reply marks no final answer), the last number of each reply."""
    if any(a is not None for a in answers):
        return list(answers)
    return [extract_answer(split_reasoning(t)[1] or t) for t in texts]


def probe_answers(candidates: Sequence[Candidate]) -> list[str | None]:
    """:func:`compared_answers` of live candidates."""
    return compared_answers([c.answer for c in candidates], [c.text for c in candidates])


def mean_score(scores: Sequence[float | None]) -> float:
    """Mean verifier score of the probe samples."""
    vals = [s for s in scores if s is not None]
    return sum(vals) / len(vals) if vals else 0.0


def features(answers: Sequence[str | None], texts: Sequence[str],
             scores: Sequence[float | None], prompt_tokens: int | None) -> dict[str, float]:
    """The difficulty features of one problem's probe: ``agreement`` always, ``confidence``
    when every sample was scored, ``prompt_tokens`` when it was counted."""
    out = {"agreement": agreement(compared_answers(answers, texts))}
    if scores and all(s is not None for s in scores):
        out["confidence"] = mean_score(scores)
    if prompt_tokens is not None and prompt_tokens > 0:
        out["prompt_tokens"] = float(prompt_tokens)
    return out


def candidate_features(probe: Sequence[Candidate], prompt_tokens: int | None
                       ) -> dict[str, float]:
    """:func:`features` of live probe candidates (serving)."""
    return features([c.answer for c in probe], [c.text for c in probe],
                    [c.score.value if c.score else None for c in probe], prompt_tokens)


def stored_features(candidates: Sequence[Mapping[str, Any]], prompt_tokens: int | None
                    ) -> dict[str, float]:
    """:func:`features` of a stored record's probe candidates (fitting)."""
    return features([c.get("answer") for c in candidates],
                    [str(c.get("text") or "") for c in candidates],
                    [c.get("score") for c in candidates], prompt_tokens)
