"""DeepConf over tool-integrated traces on the real Qwen2.5-Coder-0.5B: the trace pauses, runs
its code and continues, and its confidence covers the tokens of every step."""

from __future__ import annotations

import pytest

from testtime.backends.embedded import EmbeddedBackend
from testtime.code.sandbox import available
from testtime.confidence import token_scores, trace_confidence
from testtime.strategies import make_strategy
from testtime.strategies.base import open_context
from testtime.types import Problem

pytestmark = [pytest.mark.model, pytest.mark.slow,
              pytest.mark.skipif(not (available("namespace") or available("userns")),
                                 reason="needs a real sandbox (root or user namespaces)")]

PROBLEM = Problem(id="pencils", reference="29", question=(
    "Pencils cost 3 dollars each. Maya buys 7 pencils and pays with a 50 dollar bill. "
    "How much change does she get?"))


async def test_deepconf_weighs_a_real_tool_trace_over_all_its_steps(
        qwen05: EmbeddedBackend) -> None:
    spec = ("deepconf:mode=offline,n=1,eta=100,top_logprobs=3,temperature=0,max_tokens=300,"
            "samples=[tool-integrated:max_calls=2]")
    strategy = make_strategy(spec)
    result = await strategy.run(PROBLEM, open_context(strategy, qwen05, seed=3))
    [trace] = result.candidates
    u = result.usage
    runs = u.sandbox_runs
    assert 1 <= runs <= 2 and u.calls == runs + 1, trace.text
    assert trace.text.count("```output\n") == runs
    assert trace.text.rsplit("```output\n", 1)[1].split("```", 1)[1].strip(), \
        "the trace continues after the output"
    comp = trace.completion
    assert comp.logprobs is not None and comp.top_logprobs is not None
    assert comp.generated_tokens == u.generated_tokens
    # every step's tokens are there, the first's and the last's (the engine gives no logprobs
    # for the tokens of a stop string a step paused on); the code output is not
    said = "".join(comp.tokens or ())
    first = trace.text.split("```python", 1)[0].strip()
    last = trace.text.rsplit("```output\n", 1)[1].split("```\n", 1)[1].strip()
    assert first[:20] in said and last[-20:] in said, (said, trace.text)
    assert comp.generated_tokens - 8 * runs <= len(comp.logprobs) <= comp.generated_tokens
    if trace.answer is not None:
        conf = trace_confidence(token_scores(comp.logprobs, comp.top_logprobs),
                                "lowest-window", 32)
        assert result.votes == {trace.answer: pytest.approx(conf)}
