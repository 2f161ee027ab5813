"""Reading a sweep's stored units back as sample pools, so benches reuse what a sweep drew."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testtime.eval.store import ResultStore
from testtime.strategies import make_strategy
from testtime.strategies.base import Strategy


@dataclass(frozen=True)
class SweptUnit:
    """One stored unit: its record, the strategy it ran, and the samples kept for it
    (``None`` unless the sweep ran with ``keep_logprobs``)."""

    record: dict[str, Any]
    strategy: Strategy
    kept: list[dict[str, Any]] | None

    @property
    def problem_id(self) -> str:
        """The problem this unit solved."""
        return str(self.record["problem_id"])


def swept_units(path: Path, *, task: str, model: str, strategy: str,
                with_kept: bool = False) -> Iterator[SweptUnit]:
    """Each successful unit in the store at ``path`` that ran the registered strategy
    ``strategy`` on ``task`` with a backend serving ``model``; its kept samples are read
    only ``with_kept`` (they are megabytes per problem), else ``kept`` is None."""
    with ResultStore(path, create=False) as store:
        kept = store.traces() if with_kept else {}
        records = store.records()
    for rec in records:
        if rec["task"] != task or model not in rec["backend"]:
            continue
        ran = make_strategy(rec["strategy"])
        if ran.registered_name == strategy:
            yield SweptUnit(rec, ran, kept.get(rec["key"]))
