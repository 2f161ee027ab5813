"""Budget parsing, the Ledger's hard limits and the cost model."""

from __future__ import annotations

import time

import pytest

from testtime.backends.scripted import ScriptedBackend
from testtime.budget import Budget, BudgetExhausted, CostModel, Ledger, ModelShape, Plan
from testtime.strategies import make_strategy
from testtime.strategies.base import Context
from testtime.types import Completion, Generation, Problem, Usage


def gen(prompt: int, cached: int, *generated: int) -> Generation:
    return Generation(
        completions=tuple(Completion(text="x", generated_tokens=g) for g in generated),
        prompt_tokens=prompt, cached_tokens=cached)


def free(ledger: Ledger, n: int, max_tokens: int, prompt_estimate: int = 0) -> Plan:
    """Plan a call and drop its hold at once (what it then spends is recorded by the test)."""
    plan = ledger.plan(n, max_tokens, prompt_estimate)
    ledger.settle(plan)
    return plan


def test_parse_budget() -> None:
    b = Budget.parse("tokens=1000,calls=3,seconds=2.5")
    assert (b.generated_tokens, b.calls, b.seconds) == (1000, 3, 2.5)
    assert Budget.parse(None) == Budget()
    with pytest.raises(ValueError, match="bad budget item"):
        Budget.parse("tokenz=5")
    with pytest.raises(ValueError):
        Budget.parse("tokens=-1")
    assert Budget.parse("verifier=50,total=9").verifier_tokens == 50


def size(plan: Plan) -> tuple[int, int]:
    return plan.n, plan.max_tokens


def test_plan_shrinks_samples_then_tokens() -> None:
    ledger = Ledger(budget=Budget(generated_tokens=1000))
    assert size(free(ledger, 8, 100)) == (8, 100)
    assert size(free(ledger, 16, 100)) == (10, 100)
    ledger.record(gen(10, 0, 950))
    assert size(free(ledger, 4, 100)) == (1, 50)
    ledger.record(gen(10, 0, 50))
    with pytest.raises(BudgetExhausted) as info:
        ledger.plan(1, 1)
    assert ledger.exhausted and ledger.limit == "generated_tokens" == info.value.limit


def test_plan_holds_the_worst_case_until_settled() -> None:
    ledger = Ledger(budget=Budget(generated_tokens=300))
    first = ledger.plan(2, 100)
    assert size(ledger.plan(4, 100)) == (1, 100)  # the first call's 200 are held
    ledger.settle(first, gen(5, 0, 10, 10))
    assert ledger.usage.generated_tokens == 20 and ledger.reserved_calls == 1


def test_total_tokens_plans_with_the_prompt() -> None:
    ledger = Ledger(budget=Budget(total_tokens=1000))
    assert size(free(ledger, 4, 100, prompt_estimate=700)) == (3, 100)
    assert size(free(ledger, 1, 100, prompt_estimate=950)) == (1, 50)
    with pytest.raises(BudgetExhausted, match="total_tokens"):
        ledger.plan(1, 100, prompt_estimate=1000)


def test_calls_limit_is_hard() -> None:
    ledger = Ledger(budget=Budget(calls=2))
    for _ in range(2):
        ledger.settle(ledger.plan(1, 10), gen(5, 0, 10))
    with pytest.raises(BudgetExhausted, match="calls"):
        ledger.plan(1, 10)


def test_verifier_calls_count_against_every_limit_and_their_own() -> None:
    ledger = Ledger(budget=Budget(generated_tokens=100, verifier_tokens=50, calls=3))
    ledger.settle(ledger.plan(1, 30), gen(10, 0, 30))
    judge = ledger.plan(1, 100, prompt_estimate=20, verifier=True)
    assert size(judge) == (1, 30)  # 50 verifier tokens less its 20-token prompt
    ledger.settle(judge, gen(20, 0, 30))
    assert ledger.limit == "verifier_tokens"
    with pytest.raises(BudgetExhausted, match="verifier_tokens"):
        ledger.plan(1, 1, verifier=True)
    # The policy may still spend what is left of the shared generated-token limit.
    assert size(free(ledger, 1, 100)) == (1, 40)


def test_flops_plan_with_the_cost_model() -> None:
    shape = ModelShape(params=1e6, n_layers=0, d_model=0, n_heads=1, n_kv_heads=1,
                       weight_bytes=1e6)
    cost = CostModel(shape)
    ledger = Ledger(budget=Budget(flops=2e6 * 110), cost=cost)  # 110 tokens' worth
    assert size(free(ledger, 2, 100, prompt_estimate=10)) == (1, 100)
    assert ledger.limit == "flops"
    ledger.record(gen(10, 0, 80))  # 90 tokens spent
    assert size(free(ledger, 1, 100, prompt_estimate=10)) == (1, 10)
    ledger.record(gen(10, 0, 10))
    with pytest.raises(BudgetExhausted, match="flops"):
        ledger.plan(1, 1, prompt_estimate=1)


def test_flops_limit_refuses_a_model_of_unknown_size() -> None:
    ledger = Ledger(budget=Budget(flops=1e12))
    with pytest.raises(BudgetExhausted, match="unknown"):
        ledger.plan(1, 10)


def test_seconds_limit_refuses_after_the_deadline() -> None:
    ledger = Ledger(budget=Budget(seconds=5), started=time.monotonic() - 6)
    with pytest.raises(BudgetExhausted, match="seconds"):
        ledger.plan(1, 10)
    assert ledger.seconds_left() == 0.0


def test_cut_calls_are_counted_with_their_tokens() -> None:
    ledger = Ledger()
    ledger.record(gen(10, 0, 7), cut=True)
    assert (ledger.usage.cut_calls, ledger.usage.generated_tokens, ledger.usage.calls) == (1, 7, 1)


def test_unknown_flops_are_reported_as_unknown() -> None:
    ledger = Ledger()
    ledger.record(gen(10, 0, 5))
    assert ledger.usage.flops == 0.0 and ledger.usage.flops_known is False
    known = Ledger(cost=CostModel(ModelShape(params=1e6, n_layers=1, d_model=4, n_heads=1,
                                             n_kv_heads=1, weight_bytes=1.0)))
    known.record(gen(10, 0, 5))
    assert known.usage.flops > 0 and known.usage.flops_known


def test_verifier_calls_are_billed_as_verifier_tokens() -> None:
    ledger = Ledger()
    ledger.record(gen(100, 20, 5), verifier=True)
    u = ledger.close()
    assert (u.verifier_tokens, u.generated_tokens, u.prompt_tokens, u.calls) == (105, 0, 0, 0)
    assert (u.verifier_prompt_tokens, u.verifier_generated_tokens, u.verifier_calls) == (100, 5, 1)


def test_cost_model_counts_weights_attention_and_cache() -> None:
    shape = ModelShape(params=1e6, n_layers=2, d_model=8, n_heads=2, n_kv_heads=1,
                       weight_bytes=1e6)
    cost = CostModel(shape)
    # 2 generated tokens after a 3-token prompt: positions 3 and 4.
    assert cost.decode_flops(3, 2) == 2 * 1e6 * 2 + 4 * 2 * 8 * (3 + 4)
    cached_all = cost.of_generation(gen(10, 10, 0))[0]
    assert cached_all == 0.0
    fresh = cost.of_generation(gen(10, 0, 0))[0]
    assert fresh > 0
    # Two sequences in one batch read the weights once per step, not twice.
    one = cost.decode_bytes(0, [4])
    two = cost.decode_bytes(0, [4, 4])
    assert two - one < shape.weight_bytes * 4


def test_no_cost_model_means_zero_flops() -> None:
    assert CostModel().of_generation(gen(10, 0, 5)) == (0.0, 0.0)


async def test_seconds_deadline_cancels_the_call_in_flight_and_keeps_its_work() -> None:
    words = " ".join(f"w{i}" for i in range(100))
    backend = ScriptedBackend(responder=lambda p, i, r: words, delay=0.01)  # 1 s in all
    ctx = Context(backend=backend, budget=Budget(seconds=0.3))
    started = time.monotonic()
    result = await make_strategy("self-consistency:n=2,max_tokens=200").run(
        Problem(id="p", question="q"), ctx)
    assert time.monotonic() - started < 0.9  # stopped at the deadline, not after the call
    assert result.budget_exhausted and result.budget_limit == "seconds"
    assert backend.cancelled == 1
    u = result.usage
    assert u.cut_calls == 1 and u.calls == 1 and 10 <= u.generated_tokens < 200


async def test_seconds_deadline_stops_a_strategy_between_steps() -> None:
    backend = ScriptedBackend(responder=lambda p, i, r: "a step\n\nThe answer is 3.",
                              delay=0.02)
    ctx = Context(backend=backend, budget=Budget(seconds=0.4))
    result = await make_strategy("early-stop:max_n=400,batch=1,threshold=0.99").run(
        Problem(id="p", question="q"), ctx)
    assert result.budget_exhausted and result.budget_limit == "seconds"
    assert result.answer == "3" and 1 <= result.usage.calls < 400


def test_sandbox_runs_are_recorded_apart_from_model_calls() -> None:
    ledger = Ledger(budget=Budget(calls=1))
    step = ledger.record_sandbox(3, 0.75)
    assert (step.sandbox_runs, step.sandbox_seconds, step.counted_by) == (3, 0.75, ("sandbox",))
    ledger.record_sandbox(1, 0.25)
    usage = ledger.close()
    assert (usage.sandbox_runs, usage.sandbox_seconds) == (4, 1.0)
    assert usage.calls == 0 and usage.total_tokens == 0 and usage.sandbox_seconds_per_run == 0.25
    ledger.check_after()
    assert not ledger.exhausted


def test_tool_runs_are_recorded_apart_from_sandbox_runs_and_model_calls() -> None:
    ledger = Ledger(budget=Budget(calls=1))
    step = ledger.record_tool(2, 0.5)
    assert (step.tool_runs, step.tool_seconds, step.counted_by) == (2, 0.5, ("tools",))
    ledger.record_sandbox(1, 0.25)
    ledger.record_tool(1, 0.25)
    usage = ledger.close()
    assert (usage.tool_runs, usage.tool_seconds) == (3, 0.75)
    assert (usage.sandbox_runs, usage.calls, usage.total_tokens) == (1, 0, 0)
    assert (usage + usage).tool_runs == 6
    ledger.check_after()
    assert not ledger.exhausted


def test_a_ledger_with_no_tokens_left_says_so_and_marks_the_limit() -> None:
    ledger = Ledger(budget=Budget(generated_tokens=10))
    assert not ledger.out_of_tokens() and not ledger.exhausted
    ledger.add(Usage(generated_tokens=10))
    assert ledger.out_of_tokens()
    assert ledger.exhausted and ledger.limit == "generated_tokens"
    assert not Ledger().out_of_tokens()
