"""Sweeps: tasks × strategies × budgets × seeds × backends, resumable, into a ResultStore.

A sweep expands into Units, one per (problem, configuration), each with a stable key. The
local executor runs the units not yet in the store with bounded concurrency and writes each
record as soon as it is done, so a killed sweep resumes losing only the units in flight.
"""

from __future__ import annotations

import asyncio
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from testtime.backends.base import Backend, make_backend
from testtime.budget import Budget
from testtime.eval.runner import error_record, record, solve
from testtime.eval.store import ResultStore
from testtime.eval.units import Unit, unit_fields, unit_key
from testtime.strategies.base import make_strategy
from testtime.tasks.base import make_task
from testtime.types import Problem
from testtime.verifiers.make import make_verifier


class ConfigError(ValueError):
    """A sweep config that cannot be read or does not validate."""


class TaskEntry(BaseModel):
    """One task of a sweep and how many of its problems to use."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    spec: str
    limit: int = Field(default=20, ge=1)
    seed: int = Field(default=0, description="task seed (which problems), not sampling seed")


class SweepConfig(BaseModel):
    """Everything a sweep runs: the cross product of its lists, stored in ``store``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "sweep"
    tasks: list[TaskEntry] = Field(min_length=1)
    strategies: list[str] = Field(min_length=1)
    budgets: list[str | None] = Field(default=[None], min_length=1)
    seeds: list[int] = Field(default=[0], min_length=1)
    backends: list[str] = Field(min_length=1)
    verifier: str | None = None
    store: str = "runs/sweep.db"
    concurrency: int = Field(default=4, ge=1, le=1024)
    keep_logprobs: int | None = Field(
        default=None, ge=0, le=20,
        description="every generation also returns its tokens' logprobs with this many top "
        "alternatives each, and the store keeps every candidate's completion in its traces "
        "table, for replaying the pools offline (bench/efficiency.py); sampling is unchanged")

    @field_validator("tasks", mode="before")
    @classmethod
    def _task_strings(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [{"spec": t} if isinstance(t, str) else t for t in v]
        return v

    def check(self) -> None:
        """Build every strategy, budget and verifier once so typos fail before any work."""
        for spec in self.strategies:
            make_strategy(spec)
        for b in self.budgets:
            Budget.parse(b)
        if self.verifier:
            make_verifier(self.verifier)


def load_config(path: str | Path) -> SweepConfig:
    """Read a sweep config from YAML (.yaml/.yml) or TOML (.toml); ConfigError if invalid."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"sweep config {str(p)!r} does not exist")
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix == ".toml":
            data: Any = tomllib.loads(text)
        elif p.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            raise ConfigError(f"sweep config {p.name!r}: use a .yaml, .yml or .toml file")
    except ConfigError:
        raise
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"cannot parse {p.name}: {first}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p.name}: expected a mapping of settings at the top level")
    try:
        config = SweepConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}"
                             for e in exc.errors())
        raise ConfigError(f"invalid sweep config {p.name}: {problems}") from None
    try:
        config.check()
    except ValueError as exc:
        raise ConfigError(f"invalid sweep config {p.name}: {exc}") from None
    return config


def expand(config: SweepConfig) -> list[Unit]:
    """All units of a sweep, grouped by backend, then problem (so prefix caches hit)."""
    problems: list[tuple[str, Problem]] = []
    for entry in config.tasks:
        task = make_task(entry.spec)
        problems += [(entry.spec, p) for p in task.problems(limit=entry.limit, seed=entry.seed)]
    units = []
    for backend in config.backends:
        for task_spec, problem in problems:
            for strategy in config.strategies:
                for budget in config.budgets:
                    for seed in config.seeds:
                        key = unit_key(task_spec, problem.id, strategy, budget, seed, backend,
                                       config.verifier)
                        units.append(Unit(key=key, problem=problem, strategy=strategy,
                                          budget=budget, seed=seed, backend=backend,
                                          verifier=config.verifier, task=task_spec,
                                          keep_logprobs=config.keep_logprobs))
    if len({u.key for u in units}) != len(units):
        raise ConfigError("the sweep lists the same problem and configuration twice "
                          "(duplicate task, strategy, budget, seed or backend entries)")
    return units


async def run_unit(unit: Unit, backend: Backend) -> dict[str, Any]:
    """Solve one unit on ``backend`` and return its JSON-ready record."""
    strategy = make_strategy(unit.strategy)
    verifier = make_verifier(unit.verifier) if unit.verifier else None
    keep = unit.keep_logprobs is not None
    request = {"logprobs": True, "top_logprobs": unit.keep_logprobs} if keep else None
    result = await solve(unit.problem, strategy, backend, verifier=verifier,
                         budget=Budget.parse(unit.budget), seed=unit.seed, spec=unit.strategy,
                         request=request)
    return {**record(unit.problem, result, logprobs=keep), **unit_fields(unit)}


@dataclass
class SweepReport:
    """What one sweep invocation did, locally or on Ray: units run, written and failed.

    ``failures`` maps each failed unit's key to its last error. On Ray, ``retries``,
    ``actor_restarts`` and ``actors`` say how the cluster fared, and ``completed`` counts, per
    unit key, the executions a replica finished and sent back, so a unit run twice shows even
    though the store keeps one row per key.
    """

    total: int
    skipped: int
    written: int = 0
    failed: int = 0
    seconds: float = 0.0
    generated_tokens: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    per_backend: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    actor_restarts: int = 0
    actors: int = 0
    completed: dict[str, int] = field(default_factory=dict)

    def count(self, key: str, record: dict[str, Any], error: str | None = None) -> None:
        """Count the unit ``key`` whose ``record`` the store took: written, or failed."""
        if error is None:
            self.written += 1
            self.generated_tokens += int(record.get("usage", {}).get("generated_tokens", 0))
        else:
            self.failed += 1
            self.failures[key] = error

    @property
    def first_error(self) -> str | None:
        """The error of the first unit that failed, if any did."""
        return next(iter(self.failures.values()), None)

    @property
    def ran_twice(self) -> list[str]:
        """Unit keys whose work a replica completed more than once (none, in a sound run)."""
        return [k for k, n in self.completed.items() if n > 1]

    @property
    def units_per_second(self) -> float:
        """Units finished (ok or failed) per wall second of the run itself."""
        done = self.written + self.failed
        return done / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {"total": self.total, "skipped": self.skipped, "written": self.written,
                "errors": self.failed, "first_error": self.first_error,
                "seconds": round(self.seconds, 3), "generated_tokens": self.generated_tokens,
                "per_backend": self.per_backend, "retries": self.retries,
                "actor_restarts": self.actor_restarts, "actors": self.actors,
                "units_per_second": round(self.units_per_second, 4)}


async def _run_backend(units: list[Unit], backend: Backend, store: ResultStore,
                       concurrency: int, report: SweepReport,
                       on_done: Callable[[dict[str, Any]], None]) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def one(unit: Unit) -> None:
        async with gate:
            try:
                rec = await run_unit(unit, backend)
                status, error = "ok", None
            except Exception as exc:  # one failing unit must not sink the sweep
                rec = {**error_record(unit.problem, unit.strategy, exc), **unit_fields(unit)}
                status, error = "error", rec["error"]
        if store.put(unit, rec, status=status, error=error):
            report.count(unit.key, rec, error)
        on_done(rec)

    await asyncio.gather(*(one(u) for u in units))


async def run_sweep(config: SweepConfig, *, store: ResultStore, progress: bool = True
                    ) -> SweepReport:
    """Run every unit not yet in ``store``: one backend per backend spec, bounded concurrency."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    units = expand(config)
    done = store.done_keys()
    todo = [u for u in units if u.key not in done]
    report = SweepReport(total=len(units), skipped=len(units) - len(todo))
    started = time.monotonic()
    by_backend: dict[str, list[Unit]] = {}
    for u in todo:
        by_backend.setdefault(u.backend, []).append(u)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("acc {task.fields[acc]}"), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=Console(stderr=True),
                  disable=not progress) as bar:
        job = bar.add_task("sweep", total=len(units), completed=report.skipped, acc="-")
        graded: list[float] = []

        def on_done(rec: dict[str, Any]) -> None:
            if rec.get("correct") is not None:
                graded.append(float(rec["correct"]))
            bar.update(job, advance=1, acc=f"{sum(graded) / len(graded):.2f}" if graded else "-")

        for spec, group in by_backend.items():
            backend = make_backend(spec)
            bar.update(job, description=f"loading {spec}")
            try:
                await backend.ready()
                bar.update(job, description=f"{spec}")
                await _run_backend(group, backend, store, config.concurrency, report, on_done)
            finally:
                await backend.close()
            report.per_backend[spec] = len(group)
    report.seconds = time.monotonic() - started
    return report
