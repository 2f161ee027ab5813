"""Test-time scaling on the real 0.5B model: voting over samples beats its average sample."""

from __future__ import annotations

import pytest

from testtime.backends.embedded import EmbeddedBackend
from testtime.eval.runner import run_problems, summarise
from testtime.strategies import make_strategy
from testtime.tasks import make_task

pytestmark = [pytest.mark.model, pytest.mark.slow]

PROBLEMS = 12
N = 5


async def test_self_consistency_on_qwen05(qwen05: EmbeddedBackend) -> None:
    problems = make_task("arith:level=2").problems(limit=PROBLEMS, seed=1)
    spec = f"self-consistency:n={N},max_tokens=160"
    records, seconds = await run_problems(problems, make_strategy(spec), qwen05, spec=spec,
                                          seed=0, concurrency=4)
    s = summarise(records, strategy=spec, backend=qwen05.name, task="arith", wall_seconds=seconds)
    assert s.errors == 0
    assert s.answered == 1.0
    assert s.accuracy is not None and s.sample_accuracy is not None
    # The claim itself: the vote is right more often than the mean sample, by more than one
    # problem's worth, so a lucky or unlucky single problem cannot decide it.
    assert s.accuracy - s.sample_accuracy > 1 / PROBLEMS, (s.accuracy, s.sample_accuracy)
    assert s.usage.generated_tokens == sum(
        c["generated_tokens"] for r in records for c in r["candidates"])
    assert s.usage.prompt_tokens > 0 and s.usage.flops > 0 and s.usage.memory_bytes > 0
