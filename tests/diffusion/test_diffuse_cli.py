"""``testtime diffuse run|sweep`` on the built-in model; bad input exits 2 before any work."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from testtime.cli import app

runner = CliRunner()


def test_diffuse_run_json(tiny):
    res = runner.invoke(app, ["diffuse", "run", "--strategy", "random-search:steps=5",
                              "--budget", "nfes=20", "--limit", "3", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["nfes_per_problem"] == 20 and summary["verifier_passes_per_problem"] == 4
    assert summary["judge_score"] is not None


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "nosuch"], "unknown diffusion model"),
    (["--scheduler", "pndm"], "cannot be searched"),
    (["--budget", "nfes=9"], "below one full denoising"),
    (["--verifier", "clip:path=/none"], "needs a prompt"),
])
def test_diffuse_run_bad_input(tiny, args, message):
    res = runner.invoke(app, ["diffuse", "run", "--strategy", "smc:steps=10", *args])
    assert res.exit_code == 2
    assert message in " ".join(res.output.split())


def test_diffuse_sweep_writes_report(tiny, tmp_path):
    res = runner.invoke(app, ["diffuse", "sweep", "--out", str(tmp_path), "--search", "steps",
                              "--search", "random-search", "--multiples", "1,2",
                              "--base-steps", "4", "--limit", "2", "--quiet"])
    assert res.exit_code == 0, res.output
    for name in ("records.jsonl", "curves.png", "hacking.png", "report.md"):
        assert (tmp_path / name).stat().st_size > 0
    assert "random-search" in (tmp_path / "report.md").read_text()


@pytest.mark.slow
@pytest.mark.ci
def test_search_beats_more_steps_on_the_judge(tiny):
    """The bench's claim in small: at 8× NFEs, random search gains more judge score than steps."""
    from testtime.eval.diffusion import SweepSpec, curves, sweep

    spec = SweepSpec(searches=("steps", "random-search"), multiples=(1, 8), base_steps=10)
    problems = tiny.problems(30, seed=20000)
    by = curves(sweep(tiny, tiny.sampler("ddpm"), tiny.verifier("classifier"),
                      tiny.verifier("judge"), problems, spec))
    base = by["steps"][0].judge
    assert by["random-search"][1].judge - base > 1.5 * (by["steps"][1].judge - base)
