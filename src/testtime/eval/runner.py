"""Run one strategy over many problems concurrently, grade, record JSONL, summarise."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testtime.backends.base import Backend
from testtime.budget import Budget
from testtime.eval.grading import gradable, grade
from testtime.eval.metrics import mean, pass_at_k
from testtime.strategies.base import Strategy, derive_seed, open_context
from testtime.types import Problem, Result, Usage
from testtime.verifiers.base import Verifier


def problem_seed(seed: int, problem_id: str) -> int:
    """A per-problem seed independent of scheduling order."""
    return derive_seed(seed, problem_id)


def record(problem: Problem, result: Result, *, logprobs: bool = False) -> dict[str, Any]:
    """The JSONL record of one solved problem: answer, grading, every candidate, usage;
    with ``logprobs``, also every candidate's completion as the engine returned it (tokens,
    logprobs, top logprobs) under ``traces``, which a result store keeps apart."""
    graded = gradable(problem)
    out = {
        "problem_id": problem.id,
        "question": problem.question,
        "reference": problem.reference,
        "metadata": problem.metadata,
        "strategy": result.strategy,
        "answer": result.answer,
        "correct": grade(problem, result.answer, result.text) if graded else None,
        "text": result.text,
        "votes": result.votes,
        "budget_exhausted": result.budget_exhausted,
        "candidates": [
            {
                "text": c.text,
                "answer": c.answer,
                "correct": grade(problem, c.answer, c.text) if graded else None,
                "score": c.score.value if c.score else None,
                "steps": list(c.score.steps) if c.score and c.score.steps else None,
                "generated_tokens": c.completion.generated_tokens,
                "finish_reason": c.completion.finish_reason,
            }
            for c in result.candidates
        ],
        "usage": result.usage.model_dump(),
        "extra": {k: v for k, v in result.extra.items() if k != "trace"},
    }
    if logprobs:
        out["traces"] = [c.completion.model_dump(mode="json")
                         for c in result.candidates]
    return out


def error_record(problem: Problem, strategy: str, error: BaseException) -> dict[str, Any]:
    """The JSONL record of a problem that failed; the run goes on."""
    return {"problem_id": problem.id, "question": problem.question,
            "reference": problem.reference, "strategy": strategy, "answer": None,
            "correct": False if problem.reference is not None else None, "candidates": [],
            "usage": Usage().model_dump(), "error": f"{type(error).__name__}: {error}"}


@dataclass
class RunSummary:
    """Aggregate figures of a run."""

    strategy: str
    backend: str
    task: str
    problems: int
    errors: int
    accuracy: float | None
    sample_accuracy: float | None
    pass_at_k: float | None
    k: int
    answered: float
    usage: Usage
    wall_seconds: float
    samples: int = 0
    cut_samples: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def generated_per_second(self) -> float:
        return self.usage.generated_tokens / self.wall_seconds if self.wall_seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "strategy": self.strategy, "backend": self.backend, "task": self.task,
            "problems": self.problems, "errors": self.errors, "accuracy": self.accuracy,
            "sample_accuracy": self.sample_accuracy, f"pass@{self.k}": self.pass_at_k,
            "answered": self.answered, "k": self.k, "wall_seconds": round(self.wall_seconds, 3),
            "samples": self.samples, "cut_samples": self.cut_samples,
            "generated_tokens_per_second": round(self.generated_per_second, 2),
            "usage": self.usage.model_dump(), **self.extra,
        }


def summarise(records: Sequence[dict[str, Any]], *, strategy: str, backend: str, task: str,
              wall_seconds: float) -> RunSummary:
    """Accuracy, single-sample accuracy, pass@k and total usage over records."""
    graded = [r for r in records if r.get("correct") is not None]
    ks = [len(r["candidates"]) for r in graded if r["candidates"]]
    k = min(ks) if ks else 0
    sample_acc, passes = [], []
    for r in graded:
        cands = r["candidates"]
        if not cands:
            continue
        c = sum(1 for x in cands if x["correct"])
        sample_acc.append(c / len(cands))
        if k:
            passes.append(pass_at_k(len(cands), c, k))
    usage = Usage.total([Usage.model_validate(r["usage"]) for r in records])
    samples = [c for r in records for c in r["candidates"]]
    return RunSummary(
        strategy=strategy, backend=backend, task=task, problems=len(records),
        errors=sum(1 for r in records if r.get("error")),
        accuracy=mean([float(r["correct"]) for r in graded]) if graded else None,
        sample_accuracy=mean(sample_acc) if sample_acc else None,
        pass_at_k=mean(passes) if passes else None, k=k,
        answered=mean([float(r["answer"] is not None) for r in records]),
        usage=usage, wall_seconds=wall_seconds, samples=len(samples),
        cut_samples=sum(1 for c in samples if c.get("finish_reason") == "length"
                        and c.get("answer") is None))


async def solve(problem: Problem, strategy: Strategy, backend: Backend, *,
                verifier: Verifier | None = None, budget: Budget | None = None, seed: int = 0,
                spec: str = "", request: dict[str, Any] | None = None) -> Result:
    """Run a strategy on one problem with a fresh Context (``request``: what every
    generation is asked besides, as a caller's options are)."""
    ctx = open_context(strategy, backend, spec=spec, verifier=verifier, budget=budget,
                       seed=problem_seed(seed, problem.id), request=request)
    return await strategy.run(problem, ctx)


async def run_problems(problems: Sequence[Problem], strategy: Strategy, backend: Backend, *,
                       spec: str, verifier: Verifier | None = None,
                       budget: Budget | None = None, seed: int = 0, concurrency: int = 8,
                       out: Path | None = None, trace_dir: Path | None = None,
                       on_done: Callable[[dict[str, Any]], None] | None = None,
                       ) -> tuple[list[dict[str, Any]], float]:
    """Solve problems with bounded concurrency; records are written as each one finishes."""
    gate = asyncio.Semaphore(max(concurrency, 1))
    records: list[dict[str, Any]] = []
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
    sink = out.open("w", encoding="utf-8") if out else None
    if trace_dir:
        trace_dir.mkdir(parents=True, exist_ok=True)

    async def one(problem: Problem) -> None:
        async with gate:
            try:
                result = await solve(problem, strategy, backend, verifier=verifier,
                                     budget=budget, seed=seed, spec=spec)
                rec = record(problem, result)
                if trace_dir and "trace" in result.extra:
                    path = trace_dir / f"{_safe(problem.id)}.json"
                    path.write_text(json.dumps(result.extra["trace"], indent=1))
            except Exception as exc:  # one failing problem must not sink the run
                rec = error_record(problem, spec, exc)
        records.append(rec)
        if sink:
            sink.write(json.dumps(rec, ensure_ascii=False) + "\n")
            sink.flush()
        if on_done:
            on_done(rec)

    started = time.monotonic()
    try:
        await asyncio.gather(*(one(p) for p in problems))
    finally:
        if sink:
            sink.close()
    order = {p.id: i for i, p in enumerate(problems)}
    records.sort(key=lambda r: order.get(r["problem_id"], 0))
    return records, time.monotonic() - started


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
