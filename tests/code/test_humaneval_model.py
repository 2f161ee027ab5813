"""Qwen2.5-Coder-0.5B on two HumanEval problems, scored and graded by running their tests."""

from __future__ import annotations

import pytest

from testtime.backends.embedded import EmbeddedBackend
from testtime.eval.runner import run_problems, summarise
from testtime.strategies import make_strategy
from testtime.tasks import make_task


@pytest.mark.model
async def test_best_of_n_with_tests_on_humaneval(qwen05: EmbeddedBackend) -> None:
    problems = [p for p in make_task("humaneval").problems(limit=5)
                if p.id in ("HumanEval/2", "HumanEval/4")]
    spec = "best-of-n:n=2,verifier=tests,max_tokens=200,temperature=0.6"
    records, seconds = await run_problems(problems, make_strategy(spec), qwen05, spec=spec,
                                          seed=0)
    for rec in records:
        assert rec.get("error") is None, rec.get("error")
        cands = rec["candidates"]
        assert len(cands) == 2 and all(c["score"] is not None for c in cands)
        assert all(c["correct"] == (c["score"] == 1.0) for c in cands)
        assert rec["correct"] == (max(c["score"] for c in cands) == 1.0)
    summary = summarise(records, strategy=spec, backend="qwen", task="humaneval",
                        wall_seconds=seconds)
    assert summary.accuracy is not None and summary.sample_accuracy is not None
    assert summary.accuracy >= summary.sample_accuracy
    assert summary.usage.verifier_calls == 4 and summary.usage.verifier_tokens == 0
    assert summary.usage.verifier_seconds > 0


@pytest.mark.model
@pytest.mark.slow
async def test_best_of_n_with_generated_tests_on_humaneval(qwen05: EmbeddedBackend) -> None:
    problems = [p for p in make_task("humaneval").problems(limit=3) if p.id == "HumanEval/2"]
    spec = ("best-of-n:n=2,max_tokens=128,temperature=0.6,"
            "verifier=[codet:samples=1,count=3,max_tokens=80]")
    records, seconds = await run_problems(problems, make_strategy(spec), qwen05, spec=spec,
                                          seed=0)
    rec = records[0]
    assert rec.get("error") is None, rec.get("error")
    assert all(c["score"] is not None and 0.0 <= c["score"] <= 1.0 for c in rec["candidates"])
    summary = summarise(records, strategy=spec, backend="qwen", task="humaneval",
                        wall_seconds=seconds)
    assert summary.usage.verifier_tokens > 0  # the model wrote the tests, billed as verifier
    assert summary.usage.sandbox_runs == 2 and summary.usage.sandbox_seconds_per_run > 0
