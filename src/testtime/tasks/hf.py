"""GSM8K, MATH-500 and AIME from the Hugging Face hub (``datasets``) or local JSONL copies.

``gsm8k``, ``math500`` and ``aime`` load the real hub datasets; with ``path=FILE.jsonl`` they
read a local file in the same format instead (for offline machines).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from testtime.tasks.base import LoadReport, TaskError, tasks
from testtime.tasks.jsonl import JsonlTask, record_to_problem
from testtime.types import Problem


@dataclass(frozen=True)
class HubSource:
    """Where a benchmark lives on the hub and which fields hold question, answer and id."""

    dataset: str
    config: str | None
    split: str
    question: str
    answer: str
    fmt: str
    id_field: str | None = None


SOURCES = {
    "gsm8k": HubSource("openai/gsm8k", "main", "test", "question", "answer", "gsm8k"),
    "math500": HubSource("HuggingFaceH4/MATH-500", None, "test", "problem", "answer", "math",
                         id_field="unique_id"),
    "aime": HubSource("HuggingFaceH4/aime_2024", None, "train", "problem", "answer", "aime",
                      id_field="id"),
}


def hub_reachable(timeout: float = 3.0) -> str | None:
    """None when the hub's host resolves and accepts a connection, else why not."""
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or ""
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return None
    except OSError as exc:
        return f"cannot reach {host}: {exc}"


def load_hub_rows(dataset: str, config: str | None, split: str) -> list[dict[str, Any]]:
    """Rows of a hub dataset split; TaskError (not a traceback) when it cannot be had."""
    try:
        import datasets
    except ImportError:
        raise TaskError("loading from the Hugging Face hub needs `datasets`: "
                        "pip install 'testtime[hf]' (or pass path=FILE.jsonl)") from None
    offline_hint = ("Offline? Download it elsewhere and pass path=FILE.jsonl with the same "
                    "fields, or set HF_HUB_OFFLINE=1 to use a copy in the local cache.")
    if os.environ.get("HF_HUB_OFFLINE", "0") in ("0", "") and (why := hub_reachable()):
        raise TaskError(f"cannot load {dataset!r} from the Hugging Face hub ({why}). "
                        f"{offline_hint}")
    try:
        ds = datasets.load_dataset(dataset, config, split=split)
    except Exception as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:300]
        raise TaskError(
            f"cannot load {dataset!r} (split {split!r}) from the Hugging Face hub: "
            f"{type(exc).__name__}: {first}. {offline_hint}") from None
    return [dict(row) for row in ds]


class HubTask:
    """A benchmark from the hub, or from a local JSONL file in the hub's format."""

    source: HubSource

    def __init__(self, path: str | None = None, split: str | None = None,
                 dataset: str | None = None, config: str | None = None) -> None:
        self.path = path
        self.split = split or self.source.split
        self.dataset = dataset or self.source.dataset
        self.config = config if config is not None else self.source.config
        self.report = LoadReport()
        key = type(self).registered_name  # type: ignore[attr-defined]
        self.name = f"{key}:path={path}" if path else f"{key}:{self.dataset}/{self.split}"

    def problems(self, limit: int | None = None, seed: int = 0) -> list[Problem]:
        """The first ``limit`` problems, from the file if given, else from the hub."""
        src = self.source
        if self.path:
            local = JsonlTask(self.path, format=src.fmt,  # type: ignore[arg-type]
                              question=src.question, answer=src.answer)
            out = local.problems(limit=limit, seed=seed)
            self.report = local.report
            return out
        rows = load_hub_rows(self.dataset, self.config, self.split)
        out = []
        for i, row in enumerate(rows[:limit] if limit is not None else rows):
            ident = str(row.get(src.id_field) if src.id_field and row.get(src.id_field)
                        is not None else f"{self.split}-{i}")
            try:
                out.append(record_to_problem({**row, "id": ident}, ident, src.question,
                                             src.answer, src.fmt))
            except ValueError as exc:
                self.report.skip(f"{self.dataset}[{i}]", str(exc))
        return out


@tasks.register("gsm8k")
class Gsm8kTask(HubTask):
    """GSM8K grade-school math (openai/gsm8k, main/test); answers after ``####``."""

    source = SOURCES["gsm8k"]


@tasks.register("math500")
class Math500Task(HubTask):
    """MATH-500 (HuggingFaceH4/MATH-500, test): competition math with LaTeX answers."""

    source = SOURCES["math500"]


@tasks.register("aime")
class AimeTask(HubTask):
    """AIME 2024 (HuggingFaceH4/aime_2024); integer answers 0-999."""

    source = SOURCES["aime"]
