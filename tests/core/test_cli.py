"""The ``testtime`` command as a user runs it: summaries, JSON, records and clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from testtime.cli import WIDTH, app
from testtime.registry import describe_options
from testtime.strategies import strategies

EXE = [sys.executable, "-m", "testtime.cli"]


def tt(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EXE, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "120"})


def assert_clean_error(proc: subprocess.CompletedProcess[str], pattern: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert pattern in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--strategy", "nope:n=2"], "unknown strategy 'nope'"),
        (["--strategy", "self-consistency:n"], "bad option 'n'"),
        (["--strategy", "self-consistency:n=-3"], "greater than or equal to 1"),
        (["--backend", "embedded:gpt-9"], "unknown model pack 'gpt-9'"),
        (["--backend", "warp:x"], "unknown backend 'warp'"),
        (["--task", "missing.jsonl"], "does not exist"),
        (["--budget", "tokens=lots"], "budget"),
        (["--backend", "openai:http://127.0.0.1:9/v1,retries=0"], "cannot reach"),
        (["--strategy", "best-of-n:n=2,verifier=[judge:backend=[nowhere:x]]"],
         "'judge:backend=[nowhere:x]'"),
    ],
)
def test_bad_input_is_a_clear_error(args: list[str], message: str) -> None:
    base = ["run", "--limit", "2", "--backend", "scripted:The answer is 1."]
    proc = tt(*base, *args)
    assert_clean_error(proc, message)
    assert proc.returncode == 2 and "problems failed" not in proc.stderr


def test_scripted_run_writes_records_and_json_summary(tmp_path: Path) -> None:
    data = tmp_path / "t.jsonl"
    data.write_text(
        json.dumps({"question": "1+6?", "answer": "#### 7"}) + "\n{broken\n"
        + json.dumps({"question": "3+4?", "answer": "#### 7"}) + "\n"
        + json.dumps({"question": "2+2?", "answer": "#### 4"}) + "\n")
    out = tmp_path / "runs" / "new" / "records.jsonl"  # folders that do not exist yet
    proc = tt("run", "--task", str(data), "--strategy", "self-consistency:n=3",
                    "--backend", "scripted:The answer is 7.", "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    assert "t.jsonl:2" in proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["problems"] == 3
    assert summary["accuracy"] == pytest.approx(2 / 3)
    assert summary["pass@3"] == pytest.approx(2 / 3)
    assert summary["usage"]["generated_tokens"] == 3 * 3 * 4  # four words per scripted sample
    assert summary["skipped_lines"] == 1
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["correct"] for r in records] == [True, True, False]
    assert all(len(r["candidates"]) == 3 for r in records)


def test_models_and_strategies_listings() -> None:
    assert "smollm2-135m" in tt("models").stdout
    listing = tt("strategies").stdout
    assert "self-consistency" in listing and "best-of-n" in listing


def test_strategies_listing_shows_every_option_on_one_line() -> None:
    result = CliRunner().invoke(app, ["strategies"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "PydanticUndefined" not in result.stdout
    assert all(len(line) <= WIDTH for line in lines)
    for name in strategies.names():
        block = lines[next(i for i, line in enumerate(lines) if line.startswith(f"{name}: ")):]
        options = describe_options(strategies.get(name))
        assert len(options) == len(strategies.get(name).model_fields)
        for option in options:
            assert any(option in line for line in block[:20]), (name, option)
    adaptive = describe_options(strategies.get("adaptive"))
    assert {"policy (required)", "budget (required)"} <= set(adaptive)
    assert "sep='\\n\\n'" in describe_options(strategies.get("beam"))
    assert any(line.startswith("    verifier=None, max_depth=8, sep='\\n\\n', agg='last',")
               for line in lines)


@pytest.mark.model
def test_real_run_on_smollm(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    proc = tt("run", "--task", "arith:level=1", "--limit", "3", "--strategy",
                    "self-consistency:n=3,max_tokens=96", "--backend",
                    "embedded:smollm2-135m,slots=8", "--out", str(out), "--json", timeout=600)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["problems"] == 3 and summary["errors"] == 0
    assert summary["usage"]["generated_tokens"] > 0
    assert summary["usage"]["flops"] > 0
    assert summary["usage"]["counted_by"] == ["engine-timings"]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert sum(len(r["candidates"]) for r in records) == 9
    assert sum(c["generated_tokens"] for r in records for c in r["candidates"]) == (
        summary["usage"]["generated_tokens"])
