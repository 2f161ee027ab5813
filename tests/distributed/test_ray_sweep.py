"""Sweeps on a two-node loopback Ray cluster: exactly-once records, faults, parity with local."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from testtime.cli import app
from testtime.distributed.ray_sweep import RayExecutor, run_sweep_ray
from testtime.eval.store import ResultStore
from testtime.eval.sweep import SweepConfig, TaskEntry, expand, run_sweep

ray = pytest.importorskip("ray")

SCRIPTED = "scripted:The answer is 4,delay=0.1"
# The prompt cache makes samples depend on what an engine served before; off, they do not.
EMBEDDED = "embedded:smollm2-135m,slots=2,threads=1,cache=false"


def config(tmp_path: Path, *, backends: list[str], limit: int = 6,
           strategy: str = "self-consistency:n=2,max_tokens=32") -> SweepConfig:
    return SweepConfig(tasks=[TaskEntry(spec="arith", limit=limit)], strategies=[strategy],
                       seeds=[0], backends=backends, store=str(tmp_path / "sweep.db"))


def rows_per_key(store: ResultStore) -> dict[str, int]:
    counts: dict[str, int] = {}
    for rec in store.records(include_errors=True):
        counts[rec["key"]] = counts.get(rec["key"], 0) + 1
    return counts


def comparable(rec: dict[str, Any]) -> dict[str, Any]:
    """What must match between runs: answers and samples (as a set: order is not seeded).

    Prompt tokens are left out: the engine may divide a request's n samples over the slots
    free at the time, and each part without the prompt cache processes the prompt again.
    """
    return {
        "problem_id": rec["problem_id"], "answer": rec["answer"], "correct": rec["correct"],
        "votes": rec["votes"], "status": rec["status"],
        "samples": sorted((c["text"], c["answer"], c["generated_tokens"])
                          for c in rec["candidates"]),
        "generated_tokens": rec["usage"]["generated_tokens"],
    }


def test_cluster_has_two_nodes_on_loopback_only(ray_cluster: Any) -> None:
    nodes = [n for n in ray.nodes() if n["Alive"]]
    assert len(nodes) == 2
    assert {n["NodeManagerAddress"] for n in nodes} == {"127.0.0.1"}
    assert ray.util.get_node_ip_address() == "127.0.0.1"


@pytest.mark.model
@pytest.mark.slow
@pytest.mark.ci
def test_embedded_sweep_on_two_nodes_matches_local(ray_cluster: Any, tmp_path: Path) -> None:
    cfg = config(tmp_path, backends=[EMBEDDED], limit=3,
                 strategy="self-consistency:n=2,max_tokens=24")
    placed: list[dict[str, Any]] = []

    def on_start(executor: RayExecutor) -> None:
        placed.extend(ray.get([r.handle.where.remote() for r in executor.replicas]))

    with ResultStore(tmp_path / "ray.db") as on_ray:
        report = run_sweep_ray(cfg, store=on_ray, actors=2, progress=False, on_start=on_start)
        assert (report.written, report.failed, report.actors) == (3, 0, 2)
        assert report.completed == {u.key: 1 for u in expand(cfg)}
        assert rows_per_key(on_ray) == {u.key: 1 for u in expand(cfg)}
        remote = {r["key"]: comparable(r) for r in on_ray.records()}
    assert len({p["node_id"] for p in placed}) == 2
    assert {p["ip"] for p in placed} == {"127.0.0.1"}
    assert len({p["pid"] for p in placed} | {os.getpid()}) == 3

    with ResultStore(tmp_path / "local.db") as local_store:
        asyncio.run(run_sweep(cfg, store=local_store, progress=False))
        local = {r["key"]: comparable(r) for r in local_store.records()}
    assert remote == local
    assert any(r["samples"] for r in local.values())


def test_killed_replica_mid_sweep_every_unit_written_once(ray_cluster: Any,
                                                          tmp_path: Path) -> None:
    cfg = config(tmp_path, backends=[SCRIPTED], limit=16, strategy="single")
    killed: list[int] = []

    def on_start(executor: RayExecutor) -> None:
        victim = int(ray.get(executor.replicas[0].handle.pid.remote()))

        def kill() -> None:
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)

        threading.Timer(0.2, kill).start()

    with ResultStore(tmp_path / "ray.db") as store:
        report = run_sweep_ray(cfg, store=store, actors=2, progress=False, on_start=on_start)
        assert killed
        assert report.actor_restarts >= 1
        assert report.retries >= 1
        assert (report.written, report.failed) == (16, 0)
        assert report.completed == {u.key: 1 for u in expand(cfg)}  # none ran twice
        assert rows_per_key(store) == {u.key: 1 for u in expand(cfg)}
        assert store.counts() == {"ok": 16}


def test_unit_failing_every_time_is_recorded_as_error(ray_cluster: Any, tmp_path: Path) -> None:
    broken = "openai:http://127.0.0.1:9/v1,model=none,retries=0"
    cfg = config(tmp_path, backends=[SCRIPTED, broken], limit=2, strategy="single")
    with ResultStore(tmp_path / "ray.db") as store:
        report = run_sweep_ray(cfg, store=store, actors=1, max_retries=2, progress=False)
        assert (report.written, report.failed) == (2, 2)
        assert report.retries == 2
        assert store.counts() == {"ok": 2, "error": 2}
        errors = [r for r in store.records(include_errors=True) if r["status"] == "error"]
        assert {r["backend"] for r in errors} == {broken}
        assert all(r["error"] and "127.0.0.1:9" in r["error"] for r in errors)
        assert rows_per_key(store) == {u.key: 1 for u in expand(cfg)}


def test_rerun_resumes_from_the_store(ray_cluster: Any, tmp_path: Path) -> None:
    first = config(tmp_path, backends=[SCRIPTED], limit=3, strategy="single")
    full = config(tmp_path, backends=[SCRIPTED], limit=6, strategy="single")
    with ResultStore(tmp_path / "ray.db") as store:
        assert run_sweep_ray(first, store=store, actors=1, progress=False).written == 3
        done = set(rows_per_key(store))
        again = run_sweep_ray(full, store=store, actors=1, progress=False)
        assert (again.total, again.skipped, again.written) == (6, 3, 3)
        assert set(again.completed).isdisjoint(done) and set(again.completed.values()) == {1}
        nothing = run_sweep_ray(full, store=store, actors=1, progress=False)
        assert (nothing.skipped, nothing.written, nothing.actors) == (6, 0, 0)
        assert rows_per_key(store) == {u.key: 1 for u in expand(full)}


def test_zero_actors_is_a_clear_error(ray_cluster: Any, tmp_path: Path) -> None:
    cfg = config(tmp_path, backends=[SCRIPTED], limit=1, strategy="single")
    with ResultStore(tmp_path / "ray.db") as store, pytest.raises(ValueError, match="actors"):
        run_sweep_ray(cfg, store=store, actors=0, progress=False)


def test_cli_sweep_with_ray_writes_the_store(ray_cluster: Any, tmp_path: Path) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text(
        "tasks: [{spec: arith, limit: 3}]\nstrategies: [single]\n"
        f"backends: ['{SCRIPTED}']\nstore: {tmp_path / 'cli.db'}\n")
    result = CliRunner().invoke(app, ["sweep", str(path), "--ray"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert (summary["total"], summary["written"], summary["errors"]) == (3, 3, 0)
    with ResultStore(tmp_path / "cli.db") as store:
        assert store.counts() == {"ok": 3}


DRIVER = """
import sys
from testtime.distributed.ray_sweep import run_sweep_ray
from testtime.eval.store import ResultStore
from testtime.eval.sweep import SweepConfig
config = SweepConfig.model_validate_json(sys.argv[1])
run_sweep_ray(config, store=ResultStore(sys.argv[2]), address=sys.argv[3], actors=1,
              progress=False)
"""


def test_driver_killed_mid_sweep_rerun_writes_each_unit_once(ray_cluster: Any,
                                                             tmp_path: Path) -> None:
    cfg = SweepConfig(tasks=[TaskEntry(spec="arith", limit=3)], strategies=["single"],
                      budgets=["tokens=1", None], backends=["scripted:The answer is 4,delay=2"],
                      store=str(tmp_path / "sweep.db"))
    path = tmp_path / "ray.db"
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, cfg.model_dump_json(), str(path),
                               ray_cluster.address])
    try:
        deadline = time.monotonic() + 120
        with ResultStore(path) as watch:
            while not watch.counts().get("ok") and driver.poll() is None:
                assert time.monotonic() < deadline, "the driver wrote nothing in 120 s"
                time.sleep(0.2)
        assert driver.poll() is None, "the driver finished before it could be killed"
    finally:
        driver.kill()
        driver.wait()
    with ResultStore(path) as store:
        partial = store.counts().get("ok", 0)
        assert 1 <= partial < 6
        done = set(rows_per_key(store))
        report = run_sweep_ray(cfg, store=store, actors=1, progress=False)
        assert (report.skipped, report.written, report.failed) == (partial, 6 - partial, 0)
        # The rerun executed exactly the units the killed driver had not finished, once each.
        assert set(report.completed) == {u.key for u in expand(cfg)} - done
        assert set(report.completed.values()) == {1}
        assert rows_per_key(store) == {u.key: 1 for u in expand(cfg)}
