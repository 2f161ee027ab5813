"""Sweeps on Ray: units become actor calls, backend replicas are actors, results stream home.

The driver expands the sweep exactly like a local sweep, skips what the store already holds,
and keeps every replica as busy as its engine has parallel slots. Each result is written to
the store the moment it arrives (``put`` is idempotent on the unit key). A replica that dies
has its in-flight units put back at the front of the queue and is replaced; a unit that fails
``max_retries`` times is stored as an error with its last message, and the sweep goes on.
"""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from testtime.backends.base import make_backend
from testtime.distributed.cluster import forwarded_env, ray_session
from testtime.distributed.replica import BackendReplica, Outcome
from testtime.eval.runner import error_record
from testtime.eval.store import ResultStore
from testtime.eval.sweep import SweepConfig, SweepReport, expand
from testtime.eval.units import Unit, unit_fields

OnRecord = Callable[[Unit, dict[str, Any]], None]


@dataclass
class Replica:
    """One live actor of a backend pool and the unit calls it has in flight."""

    backend: str
    index: int
    handle: Any
    slots: int
    generation: int = 0
    inflight: int = 0
    retired: bool = False


@dataclass(frozen=True)
class ActorResources:
    """What each replica asks Ray for; one engine per actor."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    resources: dict[str, float] = field(default_factory=dict)


def backend_slots(spec: str) -> int:
    """How many units one replica of this backend serves at once (its engine's parallel slots)."""
    return max(make_backend(spec).capabilities.max_parallel, 1)


def actors_per_backend(ray: Any, backends: list[str], res: ActorResources,
                       actors: int | None) -> int:
    """Replicas per backend spec: as asked, or as many as the cluster's CPUs (GPUs) allow."""
    if actors is not None:
        if actors < 1:
            raise ValueError(f"actors must be at least 1, got {actors}")
        return actors
    total = ray.cluster_resources()
    fits = [total.get("CPU", 1.0) / res.num_cpus] if res.num_cpus > 0 else []
    if res.num_gpus > 0:
        fits.append(total.get("GPU", 0.0) / res.num_gpus)
    per_cluster = math.floor(min(fits)) if fits else 1
    return max(per_cluster // max(len(backends), 1), 1)


class RayExecutor:
    """The driver loop of one Ray sweep: submit, stream, write, retry, replace."""

    def __init__(self, ray: Any, units: list[Unit], store: ResultStore, report: SweepReport,
                 *, per_backend: int, res: ActorResources, max_retries: int,
                 on_record: OnRecord | None) -> None:
        self.ray = ray
        self.store = store
        self.report = report
        self.res = res
        self.max_retries = max(max_retries, 1)
        self.on_record = on_record
        self.queues: dict[str, deque[Unit]] = {}
        for unit in units:
            self.queues.setdefault(unit.backend, deque()).append(unit)
        self.replicas: list[Replica] = []
        for spec in self.queues:
            slots = backend_slots(spec)
            for i in range(per_backend):
                self.replicas.append(Replica(spec, i, self._spawn(spec, slots), slots))
        report.actors = len(self.replicas)
        self.restart_limit = self.max_retries * max(len(self.replicas), 1)
        self.inflight: dict[Any, tuple[Unit, Replica, int]] = {}
        self.attempts: Counter[str] = Counter()

    def _spawn(self, spec: str, slots: int) -> Any:
        actor_cls = self.ray.remote(BackendReplica)
        options: dict[str, Any] = {
            "num_cpus": self.res.num_cpus, "num_gpus": self.res.num_gpus,
            "max_concurrency": slots + 1, "max_restarts": 0, "max_task_retries": 0,
            "namespace": "testtime", "runtime_env": {"env_vars": forwarded_env()},
        }
        if self.res.resources:
            options["resources"] = dict(self.res.resources)
        return actor_cls.options(**options).remote(spec)

    def warm_up(self) -> None:
        """Load every replica's engine before the clock starts; failures surface per unit."""
        refs = [r.handle.ready.remote() for r in self.replicas]
        for ref in refs:
            try:
                self.ray.get(ref)
            except Exception:  # reported again, with context, by the units that need it
                continue

    def pids(self) -> list[int]:
        """PIDs of the live replicas' processes."""
        return [int(self.ray.get(r.handle.pid.remote())) for r in self.replicas if not r.retired]

    def run(self, advance: Callable[[], None]) -> None:
        """Run until every unit is written or recorded as failed."""
        while self._fill() or self.inflight:
            if not self.inflight:
                break
            refs = list(self.inflight)
            ready, rest = self.ray.wait(refs, num_returns=1)
            if rest:
                more, _ = self.ray.wait(rest, num_returns=len(rest), timeout=0)
                ready += more
            for ref in ready:
                if self._settle(ref):
                    advance()
        for spec, queue in self.queues.items():
            while queue:
                self._fail(queue.popleft(), f"no live replica of backend {spec!r} is left")
                advance()

    def _fill(self) -> bool:
        """Submit queued units to replicas with free slots; False when nothing is queued."""
        queued = False
        for spec, queue in self.queues.items():
            pool = [r for r in self.replicas if r.backend == spec and not r.retired]
            while queue and pool:
                replica = min(pool, key=lambda r: r.inflight / r.slots)
                if replica.inflight >= replica.slots:
                    break
                unit = queue.popleft()
                ref = replica.handle.run.remote(unit)
                self.inflight[ref] = (unit, replica, replica.generation)
                replica.inflight += 1
            queued = queued or bool(queue and pool)
        return queued

    def _settle(self, ref: Any) -> bool:
        """Handle one finished call; True when its unit is final (written or failed)."""
        unit, replica, generation = self.inflight.pop(ref)
        if replica.generation == generation:
            replica.inflight -= 1
        try:
            outcome: Outcome = self.ray.get(ref)
        except self.ray.exceptions.RayActorError as exc:
            self._replace(replica, generation)
            return self._retry(unit, f"replica died: {type(exc).__name__}: {exc}")
        except self.ray.exceptions.RayError as exc:
            return self._retry(unit, f"{type(exc).__name__}: {exc}")
        if outcome.error is not None or outcome.record is None:
            return self._retry(unit, outcome.error or "the unit returned no record")
        self.report.completed[unit.key] = self.report.completed.get(unit.key, 0) + 1
        if self.store.put(unit, outcome.record):
            self.report.count(unit.key, outcome.record)
        if self.on_record is not None:
            self.on_record(unit, outcome.record)
        return True

    def _retry(self, unit: Unit, error: str) -> bool:
        self.attempts[unit.key] += 1
        if self.attempts[unit.key] >= self.max_retries:
            self._fail(unit, error)
            return True
        self.report.retries += 1
        self.queues[unit.backend].appendleft(unit)
        return False

    def _fail(self, unit: Unit, error: str) -> None:
        record = {**error_record(unit.problem, unit.strategy, RuntimeError(error)),
                  **unit_fields(unit), "error": error}
        self.store.put(unit, record, status="error", error=error)
        self.report.count(unit.key, record, error)

    def _replace(self, replica: Replica, generation: int) -> None:
        """Swap a dead actor for a fresh one, once per death, within the restart limit."""
        if replica.generation != generation or replica.retired:
            return
        self.ray.kill(replica.handle, no_restart=True)
        replica.generation += 1
        replica.inflight = 0
        if self.report.actor_restarts >= self.restart_limit:
            replica.retired = True
            return
        self.report.actor_restarts += 1
        replica.handle = self._spawn(replica.backend, replica.slots)

    def close(self) -> None:
        """Stop every replica."""
        for replica in self.replicas:
            try:
                self.ray.kill(replica.handle, no_restart=True)
            except Exception:  # already gone
                continue


def run_sweep_ray(config: SweepConfig, *, store: ResultStore, address: str | None = None,
                  actors: int | None = None, max_retries: int = 3, progress: bool = True,
                  num_cpus: float = 1.0, num_gpus: float = 0.0,
                  resources: dict[str, float] | None = None,
                  on_record: OnRecord | None = None,
                  on_start: Callable[[RayExecutor], None] | None = None) -> SweepReport:
    """Run a sweep on Ray and write every unit's record into ``store`` exactly once.

    ``address`` is a Ray address (``ray://host:10001``, ``host:6379``, ``auto``); None starts a
    local cluster bound to 127.0.0.1. Each backend spec gets ``actors`` replicas (default: as
    many as the cluster's CPUs, or GPUs when ``num_gpus`` > 0, allow), each asking Ray for
    ``num_cpus``/``num_gpus``/``resources`` and serving as many units at once as its engine has
    parallel slots. Units already in the store are skipped, so a rerun resumes.
    """
    res = ActorResources(num_cpus=num_cpus, num_gpus=num_gpus, resources=dict(resources or {}))
    units = expand(config)
    done = store.done_keys()
    todo = [u for u in units if u.key not in done]
    report = SweepReport(total=len(units), skipped=len(units) - len(todo))
    if not todo:
        return report
    with ray_session(address, num_cpus=None) as ray:
        per_backend = actors_per_backend(ray, sorted({u.backend for u in todo}), res, actors)
        executor = RayExecutor(ray, todo, store, report, per_backend=per_backend, res=res,
                               max_retries=max_retries, on_record=on_record)
        try:
            with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                          TextColumn("{task.fields[state]}"), TimeElapsedColumn(),
                          console=Console(stderr=True), disable=not progress) as bar:
                job = bar.add_task(f"ray · {report.actors} replicas loading", total=len(todo),
                                   state="")
                executor.warm_up()
                if on_start is not None:
                    on_start(executor)
                bar.update(job, description=f"ray · {report.actors} replicas")
                started = time.monotonic()

                def advance() -> None:
                    bar.update(job, advance=1, state=(
                        f"failed {report.failed} · retries {report.retries} · "
                        f"restarts {report.actor_restarts}"))

                try:
                    executor.run(advance)
                finally:
                    report.seconds = time.monotonic() - started
        finally:
            executor.close()
    return report
