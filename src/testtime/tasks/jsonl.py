"""Problems from local JSONL files: GSM8K style, MATH style, or any fields you map."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from testtime.tasks.base import MATH_INSTRUCTION, MATH_SYSTEM, LoadReport, TaskError, tasks
from testtime.types import Problem

FORMATS: dict[str, tuple[str, str]] = {
    "gsm8k": ("question", "answer"),
    "math": ("problem", "answer"),
    "aime": ("problem", "answer"),
}


def record_to_problem(row: dict[str, Any], ident: str, question_field: str,
                      answer_field: str | None, fmt: str) -> Problem:
    """Map one raw record to a Problem; GSM8K answers keep only what follows ``####``."""
    question = row.get(question_field)
    if not isinstance(question, str) or not question.strip():
        raise ValueError(f"field {question_field!r} missing or empty")
    reference: str | None = None
    if answer_field is not None and row.get(answer_field) is not None:
        reference = str(row[answer_field])
        if fmt == "gsm8k" and "####" in reference:
            reference = reference.split("####")[-1].strip().replace(",", "")
    meta = {k: v for k, v in row.items() if k not in (question_field, answer_field)
            and isinstance(v, str | int | float | bool)}
    return Problem(id=str(row.get("id", ident)), question=question.strip(),
                   reference=reference, system=MATH_SYSTEM, instruction=MATH_INSTRUCTION,
                   metadata=meta)


@tasks.register("jsonl")
class JsonlTask:
    """A JSONL file; bad lines are reported by number and skipped, the rest still run."""

    def __init__(self, path: str, format: Literal["auto", "gsm8k", "math", "aime"] = "auto",
                 question: str | None = None, answer: str | None = None) -> None:
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise TaskError(f"task file {path!r} does not exist")
        if format not in ("auto", *FORMATS):
            raise TaskError(f"unknown format {format!r}; use auto, {', '.join(FORMATS)}")
        self.format = format
        self.question_field, self.answer_field = question, answer
        self.name = f"jsonl:{self.path.name}"
        self.report = LoadReport()

    def _fields(self, row: dict[str, Any]) -> tuple[str, str | None, str]:
        fmt = self.format
        if fmt == "auto":
            if self.question_field is None and not {"question", "problem"} & row.keys():
                raise ValueError("no 'question' (GSM8K) or 'problem' (MATH) field; "
                                 "map another with question=FIELD")
            fmt = "gsm8k" if "question" in row else "math"
        q_default, a_default = FORMATS[fmt]
        return self.question_field or q_default, self.answer_field or a_default, fmt

    def problems(self, limit: int | None = None, seed: int = 0) -> list[Problem]:
        """Parse the file line by line, skipping (and reporting) malformed lines."""
        out: list[Problem] = []
        with self.path.open(encoding="utf-8", errors="replace") as f:
            for lineno, line in enumerate(f, start=1):
                if limit is not None and len(out) >= limit:
                    break
                if not line.strip():
                    continue
                where = f"{self.path.name}:{lineno}"
                try:
                    row = json.loads(line)
                    if not isinstance(row, dict):
                        raise ValueError("not a JSON object")
                    q, a, fmt = self._fields(row)
                    out.append(record_to_problem(row, f"{self.path.stem}-{lineno}", q, a, fmt))
                except (ValueError, TypeError) as exc:
                    self.report.skip(where, str(exc).splitlines()[0])
        if not out and self.report.skipped:
            raise TaskError(f"no valid problems in {self.path}: {self.report.skipped[0]}")
        return out
