"""Every registered strategy end to end on the real SmolLM2-135M, billed to the engine's count.

Tiny n and max_tokens keep this in the CI subset. Each run's Usage must equal what the engine
itself counted (llama.cpp's ``tokens_predicted_total``), policy and judge together, so a
strategy that spends outside its Context, or a call that goes unrecorded, fails here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from testtime.backends.embedded import EmbeddedBackend
from testtime.strategies import make_strategy
from testtime.strategies.base import Context, strategies
from testtime.tasks.base import MATH_INSTRUCTION, MATH_SYSTEM
from testtime.types import Problem
from testtime.verifiers.make import make_verifier

pytestmark = pytest.mark.model

PROBLEM = Problem(id="add", question="What is 2 + 3? End with 'The answer is N.'",
                  reference="5")
JUDGE = "judge:mode=logprobs"
SPECS = {
    "single": "single:max_tokens=24",
    "self-consistency": "self-consistency:n=2,max_tokens=24",
    "best-of-n": "best-of-n:n=2,max_tokens=24",
    "weighted-vote": "weighted-vote:n=2,max_tokens=24",
    "multi-temperature": "multi-temperature:n=2,max_tokens=24",
    "no-thinking": "no-thinking:n=2,max_tokens=8",
    "early-stop": "early-stop:max_n=2,batch=2,max_tokens=24",
    "first-finish": "first-finish:n=2,max_tokens=24",
    "short-m": "short-m:n=3,m=1,max_tokens=24",
    "revision": "revision:rounds=1,max_tokens=24",
    "budget-forcing": "budget-forcing:max_think=24,answer_tokens=8",
    "beam": "beam:n=2,width=2,max_tokens=12,max_depth=2",
    "lookahead": "lookahead:n=2,width=2,max_tokens=12,max_depth=2",
    "dvts": "dvts:n=2,width=2,max_tokens=12,max_depth=2",
    "mcts": "mcts:iterations=2,width=2,rollouts=1,rollout_tokens=12,max_tokens=12,max_depth=2",
    "particle-filter": "particle-filter:n=2,max_tokens=12,max_depth=2",
    "adaptive": "adaptive:policy={policy},budget=64",
    "deepconf": "deepconf:n=4,warmup=2,batch=2,window=4,max_tokens=24",
    "certainty-probe": "certainty-probe:n=2,probe_every=8,k=2,max_tokens=24",
    "program": "program:n=2,select=weighted,max_tokens=48",
    "cross-check": "cross-check:n=1,programs=1,max_tokens=48",
    "tool-integrated": "tool-integrated:n=2,max_calls=1,max_tokens=48",
    "agent": "agent:tools=calculator,n=2,select=best,max_turns=2,max_tokens=32",
}


def test_every_registered_strategy_is_covered() -> None:
    assert set(SPECS) == set(strategies.names())


@pytest.mark.parametrize("name", sorted(SPECS))
async def test_strategy_on_smollm(name: str, smollm: EmbeddedBackend, tmp_path: Path,
                                  engine_count: Callable[[EmbeddedBackend], float]) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({
        "probe_k": 2, "edges": [0.75], "max_tokens": 24, "verifier": JUDGE,
        "budgets": {"64": [{"family": "majority", "k": 2}, {"family": "weighted", "k": 3}]}}))
    strategy = make_strategy(SPECS[name].format(policy=policy))
    before = engine_count(smollm)
    ctx = Context(backend=smollm, verifier=make_verifier(JUDGE), seed=3, spec=name)
    result = await strategy.run(PROBLEM, ctx)
    u = result.usage
    engine_generated = engine_count(smollm) - before
    assert u.calls >= 1 and u.generated_tokens > 0
    assert result.candidates and result.text is not None
    # Every token the engine generated is in the Usage (a stopped call may have decoded one
    # token past its last reported chunk: llama.cpp sees the cancel only between steps).
    counted = u.generated_tokens + u.verifier_generated_tokens
    assert counted <= engine_generated <= counted + u.cut_calls, (counted, engine_generated)
    assert u.flops_known and u.flops > 0
    if getattr(strategy, "uses_verifier", False) or name == "adaptive":
        assert u.verifier_calls > 0 and u.verifier_tokens > 0 and u.verifier_flops > 0



@pytest.mark.slow
@pytest.mark.ci
async def test_a_fitted_policy_answers_when_no_thinking_answers_agree_and_thinks_otherwise(
        qwen05: EmbeddedBackend, engine_count: Callable[[EmbeddedBackend], float]) -> None:
    """At its lowest budget a policy fitted on arith (tests/data/arith-policy.json, shipped
    before the GSM8K refit) probes with two no-thinking answers. On a short sum they agree,
    and no-thinking@2 answers from the probe itself: one call, a few tokens. On a two-step
    question they differ, and it thinks: a greedy chain of thought, which cannot reuse the
    prefilled probe. Usage equals llama.cpp's own count."""
    from testtime.policy import load_policy

    path = Path(__file__).resolve().parents[1] / "data" / "arith-policy.json"
    shipped = load_policy(str(path))
    low = shipped.levels()["low"]
    adaptive = make_strategy(f"adaptive:policy={path},budget={low:g}")
    def arith(pid: str, question: str, reference: str) -> Problem:
        return Problem(id=pid, question=question, reference=reference, system=MATH_SYSTEM,
                       instruction=MATH_INSTRUCTION)

    easy = arith("sum", "What is 12 + 30?", "42")
    hard = arith("two-step", "What is 24 * 4 + 55?", "151")
    runs = []
    for problem in (easy, hard):
        before = engine_count(qwen05)
        result = await adaptive.run(problem, Context(backend=qwen05, seed=0, strategy="adaptive"))
        u = result.usage
        counted = u.generated_tokens + u.verifier_generated_tokens
        assert counted <= engine_count(qwen05) - before <= counted + u.cut_calls
        runs.append(result)
    quick, thought = runs
    assert quick.extra["predicted_bin"] == 1 and quick.extra["choice"] == "no-thinking@2"
    assert quick.answer == "42" and len(quick.candidates) == 2 and quick.usage.calls == 1
    assert all(c.text.startswith("The answer is") for c in quick.candidates)
    assert quick.usage.generated_tokens <= 2 * shipped.max_tokens
    assert thought.extra["predicted_bin"] == 3 and thought.extra["probe_statistic"] == 0.5
    assert thought.extra["choice_spec"] == shipped.choose(3, low)[1].spec
    assert thought.usage.calls == 2 and len(thought.candidates) == 1
    assert thought.usage.generated_tokens > 3 * quick.usage.generated_tokens
