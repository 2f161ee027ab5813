"""The replica an actor holds and the sizing of actor pools, without starting Ray."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from testtime.distributed.cluster import RayClusterError, check_reachable
from testtime.distributed.ray_sweep import ActorResources, actors_per_backend, backend_slots
from testtime.distributed.replica import BackendReplica
from testtime.eval.sweep import SweepConfig, TaskEntry, expand


def units(tmp_path: Path, backend: str) -> list[Any]:
    cfg = SweepConfig(tasks=[TaskEntry(spec="arith", limit=2)], strategies=["single"],
                      backends=[backend], store=str(tmp_path / "s.db"))
    return expand(cfg)


async def test_replica_runs_a_unit_into_a_record(tmp_path: Path) -> None:
    unit = units(tmp_path, "scripted:The answer is 4")[0]
    replica = BackendReplica(unit.backend)
    await replica.ready()
    outcome = await replica.run(unit)
    assert outcome.error is None and outcome.key == unit.key
    assert outcome.record is not None
    assert (outcome.record["key"], outcome.record["answer"]) == (unit.key, "4")
    assert replica.served == 1


async def test_replica_reports_a_failing_unit_instead_of_raising(tmp_path: Path) -> None:
    unit = units(tmp_path, "openai:http://127.0.0.1:9/v1,model=none,retries=0")[0]
    outcome = await BackendReplica(unit.backend).run(unit)
    assert outcome.record is None
    assert outcome.error is not None and "127.0.0.1:9" in outcome.error


class Resources:
    def __init__(self, **total: float) -> None:
        self.total = total

    def cluster_resources(self) -> dict[str, float]:
        return self.total


def test_actor_pool_size_follows_cluster_resources() -> None:
    cpus = ActorResources(num_cpus=2)
    assert actors_per_backend(Resources(CPU=8), ["a"], cpus, None) == 4
    assert actors_per_backend(Resources(CPU=8), ["a", "b"], cpus, None) == 2
    gpus = ActorResources(num_cpus=1, num_gpus=1)
    assert actors_per_backend(Resources(CPU=32, GPU=4), ["a"], gpus, None) == 4
    assert actors_per_backend(Resources(CPU=1), ["a"], cpus, None) == 1
    assert actors_per_backend(Resources(CPU=8), ["a"], cpus, 3) == 3
    with pytest.raises(ValueError, match="actors"):
        actors_per_backend(Resources(CPU=8), ["a"], cpus, 0)


def test_replica_concurrency_is_the_engines_slots() -> None:
    assert backend_slots("embedded:smollm2-135m,slots=6") == 6


def test_unreachable_address_is_a_clear_error_not_a_hang(tmp_path: Path) -> None:
    with pytest.raises(RayClusterError, match=r"cannot reach Ray at '127\.0\.0\.1:1'"):
        check_reachable("127.0.0.1:1")
    check_reachable("auto")
    path = tmp_path / "sweep.yaml"
    path.write_text("tasks: [arith]\nstrategies: [single]\nbackends: ['scripted:4']\n"
                    f"store: {tmp_path / 's.db'}\n")
    done = subprocess.run([sys.executable, "-m", "testtime.cli", "sweep", str(path), "--ray",
                           "ray://127.0.0.1:1"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "cannot reach Ray at 'ray://127.0.0.1:1'" in done.stderr
    assert "Traceback" not in done.stderr
