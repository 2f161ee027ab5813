"""Tasks: named problem sources behind one small interface, and the default math prompt."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from testtime.registry import Registry, split_spec

MATH_SYSTEM = "You are a careful math assistant. Reason step by step."
MATH_INSTRUCTION = (
    "Solve the problem step by step. Finish with a last line of the form "
    "'The answer is N', where N is the final answer only."
)


@dataclass
class LoadReport:
    """What loading a task skipped, with reasons and line numbers, so nothing is lost silently."""

    skipped: list[str] = field(default_factory=list)

    def skip(self, where: str, why: str) -> None:
        """Record one skipped item."""
        self.skipped.append(f"{where}: {why}")


@runtime_checkable
class Task(Protocol):
    """A named source of problems."""

    name: str
    report: LoadReport

    def problems(self, limit: int | None = None, seed: int = 0) -> list[Any]:
        """The task's problems, first ``limit`` of them."""
        ...


tasks: Registry[Any] = Registry("task")


class TaskError(ValueError):
    """A task that cannot be loaded at all (missing file, unknown format, offline hub)."""


def make_task(spec: str) -> Task:
    """Build a task from ``arith:level=3``, ``jsonl:path=f.jsonl,format=gsm8k`` or a path."""
    if spec.endswith((".jsonl", ".json")) and ":" not in spec.split("/")[0]:
        spec = f"jsonl:path={spec}"
    name, options = split_spec(spec, positional="path" if spec.startswith("jsonl") else None)
    cls = tasks.get(name)
    try:
        task: Task = cls(**options)
    except TypeError as exc:
        raise TaskError(f"invalid task spec {spec!r}: {exc}") from None
    return task
