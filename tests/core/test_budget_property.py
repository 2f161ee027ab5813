"""Property: whatever the strategy, verifier and budget, the final Usage stays within the Budget.

Scripted policy, scripted judge (the same scripted backend answering judge prompts) and a
scripted reward model (a reward-http verifier over an in-process transport): every limit holds
to within one call's planned worst case, and a verifier that ran always shows verifier tokens.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from testtime.backends.scripted import ScriptedBackend
from testtime.budget import Budget, CostModel, ModelShape
from testtime.strategies import make_strategy
from testtime.strategies.base import Context
from testtime.types import GenerationRequest, Problem, Prompt
from testtime.verifiers.cache import CachedVerifier
from testtime.verifiers.judge import JUDGE_SYSTEM
from testtime.verifiers.judge_select import SELECT_SYSTEM
from testtime.verifiers.make import make_verifier
from testtime.verifiers.reward_http import RewardHTTPVerifier

SHAPE = ModelShape(params=1e6, n_layers=2, d_model=16, n_heads=2, n_kv_heads=1,
                   weight_bytes=2e6)
STRATEGIES = [
    "single:max_tokens={m}", "self-consistency:n={n},max_tokens={m}",
    "best-of-n:n={n},max_tokens={m}", "weighted-vote:n={n},max_tokens={m}",
    "first-finish:n={n},max_tokens={m}", "multi-temperature:n={n},max_tokens={m}",
    "early-stop:max_n={n},batch=2,max_tokens={m}", "revision:rounds=2,max_tokens={m}",
    "budget-forcing:max_think={m},answer_tokens=8", "beam:n={n},width=2,max_tokens={m}",
    "lookahead:n={n},width=2,max_tokens={m}", "dvts:n={n},width=2,max_tokens={m}",
    "mcts:iterations=3,width=2,rollout_tokens={m},max_tokens={m}",
    "particle-filter:n={n},max_tokens={m}",
]
VERIFIERS = ["judge:mode=sample,k=3", "judge:mode=sample,k=2,think=400",
             "judge:mode=logprobs,think=300", "judge-select:mode=sample,k=3,group=3",
             "reward", "combo:parts=[0.5*confidence|0.5*[judge:mode=sample,k=2]]"]


def respond(prompt: Prompt, i: int, req: GenerationRequest) -> str:
    """Long-winded judges, short policy steps ending in an answer."""
    system = prompt.messages[0].content if prompt.messages else ""
    if system == JUDGE_SYSTEM:
        return "checking " * 30 + ("Verdict: Yes" if i % 2 else "Verdict: No") \
            if "Verdict" in prompt.messages[-1].content else ("Yes" if i % 2 else "No")
    if system == SELECT_SYSTEM:
        return str(i % 2 + 1)
    return f"Step one adds {i}.\n\nStep two: so the answer is {i % 3}."


def reward_server(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    words = len(str(body.get("input", "")).split())
    return httpx.Response(200, json={"data": [{"data": [0.2, 0.8]}],
                                     "usage": {"prompt_tokens": words}})


def verifier(spec: str) -> Any:
    if spec != "reward":
        return make_verifier(spec)
    v = RewardHTTPVerifier(url="http://reward.test", params=5e5, layers=2, width=16)
    v.use_transport(httpx.MockTransport(reward_server))
    return CachedVerifier(v, "reward")


budgets = st.builds(
    Budget,
    generated_tokens=st.none() | st.integers(1, 400),
    total_tokens=st.none() | st.integers(1, 3000),
    verifier_tokens=st.none() | st.integers(1, 1500),
    calls=st.none() | st.integers(1, 12),
    flops=st.none() | st.floats(1e6, 5e9),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(strategy=st.sampled_from(STRATEGIES), v=st.sampled_from(VERIFIERS), budget=budgets,
       n=st.integers(2, 4), m=st.integers(4, 64))
def test_usage_never_exceeds_the_budget(strategy: str, v: str, budget: Budget, n: int,
                                        m: int) -> None:
    backend = ScriptedBackend(responder=respond, top_logprobs=lambda p, t: {"Yes": -0.3,
                                                                           "No": -1.4})
    backend.cost = CostModel(SHAPE)
    problem = Problem(id="p", question="What is one plus one?", reference="2")
    ctx = Context(backend=backend, verifier=verifier(v), budget=budget, seed=1)
    plans: list[int] = []
    worst_flops: list[float] = []
    plan = ctx.ledger.plan

    def watched(*args: Any, **kwargs: Any) -> Any:
        p = plan(*args, **kwargs)
        plans.append(p.tokens)
        worst_flops.append(p.flops)
        return p

    ctx.ledger.plan = watched  # type: ignore[method-assign]
    result = asyncio.run(make_strategy(strategy.format(n=n, m=m)).run(problem, ctx))
    u = result.usage
    slack = max(plans, default=0)
    spent = {
        "generated_tokens": u.generated_tokens + u.verifier_generated_tokens,
        "total_tokens": u.total_tokens,
        "verifier_tokens": u.verifier_tokens,
        "calls": u.calls + u.verifier_calls,
        "flops": u.flops,
    }
    limits = {name: getattr(budget, name) for name in spent}
    for name, cap in limits.items():
        if cap is None:
            continue
        extra = {"calls": 1, "flops": max(worst_flops, default=0.0)}.get(name, slack)
        assert spent[name] <= cap + extra, (name, spent[name], cap)
        assert spent[name] <= cap, f"{name}: {spent[name]} > {cap} (planned calls overran)"
    if u.verifier_calls or u.verifier_passes:
        assert u.verifier_tokens > 0
    if result.budget_exhausted:
        assert result.budget_limit in limits
    assert ctx.ledger.reserved_calls == 0 and ctx.ledger.reserved_tokens == 0


any_budget = st.builds(
    Budget,
    generated_tokens=st.none() | st.integers(1, 10**9),
    total_tokens=st.none() | st.integers(1, 10**9),
    verifier_tokens=st.none() | st.integers(1, 10**9),
    calls=st.none() | st.integers(1, 1000),
    seconds=st.none() | st.floats(1e-3, 1e6),
    flops=st.none() | st.floats(1.0, 1e18),
)


@given(budgets=st.lists(any_budget, max_size=5))
def test_combined_budget_allows_only_what_every_input_allows(budgets: list[Budget]) -> None:
    combined = Budget.combine(*budgets)
    for name in Budget.model_fields:
        given = [getattr(b, name) for b in budgets if getattr(b, name) is not None]
        if given:
            assert getattr(combined, name) == min(given)
        else:
            assert getattr(combined, name) is None


@given(a=any_budget, b=any_budget, c=any_budget)
def test_combining_budgets_is_commutative_associative_and_idempotent(
        a: Budget, b: Budget, c: Budget) -> None:
    assert a.tighter(b) == b.tighter(a)
    assert a.tighter(b).tighter(c) == a.tighter(b.tighter(c)) == Budget.combine(a, b, c)
    assert a.tighter(a) == a
    assert a.tighter(Budget()) == a == Budget.combine(a, None)
