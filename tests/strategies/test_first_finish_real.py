"""First-finish on the real SmolLM2-135M: the three samples it cancels are billed."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from testtime.backends.embedded import EmbeddedBackend
from testtime.strategies import make_strategy
from testtime.strategies.base import Context
from testtime.types import Problem

pytestmark = pytest.mark.model


async def test_first_finish_bills_the_samples_it_cancels(
        smollm: EmbeddedBackend, engine_count: Callable[[EmbeddedBackend], float]) -> None:
    problem = Problem(id="q", question="What is 3+4? Reply 'The answer is N.'")
    before = engine_count(smollm)
    ctx = Context(backend=smollm, seed=1)
    result = await make_strategy("first-finish:n=4,max_tokens=120,temperature=1.0").run(
        problem, ctx)
    u = result.usage
    # Usually one sample finishes first and three are cut; two finishing in the same step
    # leaves two to cut. Either way every cut sample is a cut call with its tokens.
    assert result.extra["cancelled"] == u.cut_calls == 4 - len(result.candidates) >= 2
    assert u.calls == 4
    finished = sum(c.completion.generated_tokens for c in result.candidates)
    assert u.generated_tokens > finished  # the cut samples' tokens are in the Usage
    engine = engine_count(smollm) - before
    # llama.cpp's own count: what was reported, plus at most the one token each cut sample
    # decoded while its cancel reached the engine.
    assert u.generated_tokens <= engine <= u.generated_tokens + u.cut_calls
