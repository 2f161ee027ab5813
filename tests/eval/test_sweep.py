"""Sweep config, unit keys, the result store and resuming after kill -9."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testtime.backends.scripted import ScriptedBackend
from testtime.eval.store import ResultStore, StoreError
from testtime.eval.sweep import ConfigError, SweepConfig, expand, load_config, run_sweep, run_unit

CONFIG = """
tasks:
  - {{spec: "arith:level=2+3", limit: {limit}}}
strategies: ["self-consistency:n=4", "single"]
seeds: [0, 1]
backends: ["scripted:The answer is 42.,delay={delay}"]
store: {store}
concurrency: 2
"""


def write_config(tmp_path: Path, limit: int = 3, delay: float = 0.0) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(CONFIG.format(limit=limit, delay=delay, store=tmp_path / "s.db"))
    return path


def test_expand_is_cross_product_with_stable_unique_keys(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path))
    units = expand(cfg)
    assert len(units) == 3 * 2 * 2
    assert len({u.key for u in units}) == len(units)
    assert [u.key for u in expand(cfg)] == [u.key for u in units]


def test_toml_config_loads(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('strategies = ["single"]\nbackends = ["scripted"]\nstore = "x.db"\n'
                    '[[tasks]]\nspec = "arith"\nlimit = 2\n')
    cfg = load_config(path)
    assert cfg.tasks[0].limit == 2 and cfg.budgets == [None]


@pytest.mark.parametrize("text, message", [
    ("tasks: [\n", "cannot parse"),
    ("- 1\n", "mapping"),
    ("tasks: [arith]\nstrategies: [single]\n", "backends"),
    ("tasks: [arith]\nstrategies: [nope]\nbackends: [scripted]\n", "unknown strategy"),
    ("tasks: [arith]\nstrategies: [single]\nbackends: [scripted]\nbudgets: [cats=3]\n",
     "bad budget"),
    ("tasks: [arith]\nstrategies: [single]\nbackends: [scripted]\ntypo: 1\n", "typo"),
])
def test_bad_config_is_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_store_put_is_idempotent_and_error_rows_are_retried(tmp_path: Path) -> None:
    cfg = SweepConfig(tasks=[{"spec": "arith", "limit": 1}], strategies=["single"],
                      backends=["scripted"], store=str(tmp_path / "s.db"))
    unit = expand(cfg)[0]
    with ResultStore(tmp_path / "s.db") as store:
        assert store.put(unit, {"a": 1}, status="error", error="boom")
        assert store.done_keys() == set()
        assert store.put(unit, {"a": 2})
        assert not store.put(unit, {"a": 3})
        assert not store.put(unit, {"a": 4}, status="error", error="late")
        (rec,) = store.records()
        assert rec["a"] == 2 and rec["key"] == unit.key and rec["status"] == "ok"


def test_broken_store_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_text("not sqlite at all " * 100)
    with pytest.raises(StoreError, match="not a usable result store"):
        ResultStore(bad)
    with pytest.raises(StoreError, match="does not exist"):
        ResultStore(tmp_path / "missing.db", create=False)


def test_reading_a_store_leaves_its_file_as_it_was(tmp_path: Path) -> None:
    import shutil
    import sqlite3

    copy = tmp_path / "store.db"
    shutil.copy(Path(__file__).parents[2] / "examples" / "policy-sweep.db", copy)
    with sqlite3.connect(copy) as db:  # as a store committed after a checkpoint is kept
        db.execute("PRAGMA journal_mode=DELETE")
    before = copy.read_bytes()
    with ResultStore(copy, create=False) as s:
        assert s.records()
    assert copy.read_bytes() == before


async def test_run_unit_record_carries_configuration() -> None:
    cfg = SweepConfig(tasks=[{"spec": "arith:level=1", "limit": 1}],
                      strategies=["self-consistency:n=3,max_tokens=4"], budgets=["tokens=8"],
                      backends=["scripted"], store="unused.db")
    unit = expand(cfg)[0]
    rec = await run_unit(unit, ScriptedBackend())
    assert rec["key"] == unit.key and rec["budget"] == "tokens=8"
    assert len(rec["candidates"]) == 2  # 4 words per sample, 8-token budget
    assert rec["usage"]["generated_tokens"] <= 8


async def test_kept_logprobs_are_stored_apart_and_leave_keys_and_records_alone(
        tmp_path: Path) -> None:
    plain = SweepConfig(tasks=[{"spec": "arith:level=1", "limit": 1}],
                        strategies=["self-consistency:n=3,max_tokens=8"], backends=["scripted"],
                        store=str(tmp_path / "s.db"))
    kept = plain.model_copy(update={"keep_logprobs": 3})
    (unit,) = expand(kept)
    assert unit.key == expand(plain)[0].key
    tops = {"42": -0.1, "41": -2.5, "7": -4.0}
    backend = ScriptedBackend(top_logprobs=lambda prompt, text: tops)
    rec = await run_unit(unit, backend)
    with ResultStore(tmp_path / "s.db") as store:
        assert store.put(unit, rec)
        (stored,) = store.records()
        traces = store.traces()
    assert "traces" not in stored and len(stored["candidates"]) == 3
    completions = traces[unit.key]
    assert len(completions) == 3
    assert all(c["top_logprobs"][0] == tops and len(c["logprobs"]) == len(c["tokens"])
               for c in completions)
    with ResultStore(tmp_path / "plain.db") as store:
        store.put(unit, await run_unit(expand(plain)[0], backend))
        assert store.traces() == {}


async def test_kept_logprobs_never_lower_what_a_strategy_asks() -> None:
    cfg = SweepConfig(tasks=[{"spec": "arith:level=1", "limit": 1}],
                      strategies=["deepconf:mode=offline,n=2,max_tokens=8"],
                      backends=["scripted"], store="unused.db", keep_logprobs=0)
    backend = ScriptedBackend()
    await run_unit(expand(cfg)[0], backend)
    asked = {r.top_logprobs for r in backend.requests}
    assert asked == {5} and all(r.logprobs for r in backend.requests)


async def test_rerun_skips_done_units(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path))
    with ResultStore(cfg.store) as store:
        first = await run_sweep(cfg, store=store, progress=False)
        second = await run_sweep(cfg, store=store, progress=False)
        assert (first.written, first.skipped) == (12, 0)
        assert (second.written, second.skipped) == (0, 12)
        assert len(store.records()) == 12


def _rows(db: Path) -> dict[str, float]:
    try:
        with sqlite3.connect(db) as con:
            return dict(con.execute("SELECT key, written FROM results").fetchall())
    except sqlite3.OperationalError:  # not created yet
        return {}


def test_sweep_killed_with_sigkill_resumes_without_duplicates(tmp_path: Path) -> None:
    config = write_config(tmp_path, limit=10, delay=0.03)
    db = tmp_path / "s.db"
    cmd = [sys.executable, "-m", "testtime.cli", "sweep", str(config), "--quiet"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if db.exists() and len(_rows(db)) >= 8:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = _rows(db)
    assert 8 <= len(before) < 40, "the kill must land mid-sweep"
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    after = _rows(db)
    assert len(after) == 40
    assert all(after[k] == t for k, t in before.items()), "a finished row was rewritten"
    assert f'"skipped": {len(before)}' in done.stdout


async def test_sweeps_record_stopped_traces_and_the_report_shows_them(tmp_path: Path) -> None:
    from testtime.eval.curves import direct_point
    from testtime.eval.report import markdown_table
    from testtime.eval.stats import summarise_points

    cfg = SweepConfig(tasks=[{"spec": "arith:level=1", "limit": 2}],
                      strategies=["certainty-probe:n=2,probe_every=2,k=2", "single"],
                      backends=["scripted:Step one. Step two. Step three. The answer is 4."],
                      store=str(tmp_path / "s.db"))
    with ResultStore(cfg.store) as store:
        await run_sweep(cfg, store=store, progress=False)
        records = store.records()
    probe = [r for r in records if r["strategy"].startswith("certainty-probe")]
    assert probe and all(r["usage"]["stopped_traces"] == 2 for r in probe)
    assert all(r["usage"]["stopped_tokens"] == 8 for r in probe)  # probed at 2, then 4 words
    table = markdown_table(summarise_points([direct_point(r) for r in records]))
    assert "stopped traces (tok)" in table
    assert "| 2.00 (8) |" in table and "| 0.00 (0) |" in table
