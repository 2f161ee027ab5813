"""Units: one problem under one configuration, the smallest piece of a sweep, with a stable key.

The sweep expands into them, the store keeps one row per unit key, and every executor (local or
Ray) runs them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from testtime.types import Problem


@dataclass(frozen=True)
class Unit:
    """One problem under one configuration: the smallest piece of a sweep."""

    key: str
    problem: Problem
    strategy: str
    budget: str | None
    seed: int
    backend: str
    verifier: str | None
    task: str = ""
    keep_logprobs: int | None = None
    """Keep each candidate's token logprobs, with this many top alternatives per token (None:
    keep none); how a unit is recorded, not what it is, so not part of its key."""


def unit_key(task: str, problem_id: str, strategy: str, budget: str | None, seed: int,
             backend: str, verifier: str | None) -> str:
    """A stable hash of everything that defines a unit."""
    blob = json.dumps([task, problem_id, strategy, budget, seed, backend, verifier])
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def unit_fields(unit: Unit) -> dict[str, Any]:
    """The configuration columns every stored record carries."""
    return {"key": unit.key, "task": unit.task, "budget": unit.budget, "seed": unit.seed,
            "backend": unit.backend, "verifier": unit.verifier}
