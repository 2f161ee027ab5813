"""A seeded run on a fresh embedded engine reproduces its records exactly when its problems
run one at a time with the prompt cache off (docs/backends.md says what varies otherwise)."""

from __future__ import annotations

import os

import pytest

from testtime.backends.embedded import EmbeddedBackend
from testtime.eval.runner import run_problems
from testtime.strategies import make_strategy
from testtime.tasks import make_task

pytestmark = pytest.mark.model


async def test_a_seeded_run_one_problem_at_a_time_reproduces_its_samples() -> None:
    problems = make_task("arith:level=3+4").problems(limit=6)
    spec = "self-consistency:n=4,max_tokens=48"
    texts = []
    for _ in range(2):
        backend = EmbeddedBackend(model="smollm2-135m", slots=8, ctx=512, cache=False,
                                  threads=int(os.environ.get("TESTTIME_THREADS", 2)))
        backend.start()
        try:
            records, _ = await run_problems(problems, make_strategy(spec), backend, spec=spec,
                                            seed=0, concurrency=1)
        finally:
            await backend.close()
        texts.append({r["problem_id"]: [c["text"] for c in r["candidates"]] for r in records})
    assert texts[0] == texts[1]
    assert len({t for ts in texts[0].values() for t in ts}) > 6, "the samples differ"
