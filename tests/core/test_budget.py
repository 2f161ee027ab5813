"""Budget parsing, the Ledger's hard limits and the cost model."""

from __future__ import annotations

import pytest

from testtime.budget import Budget, BudgetExhausted, CostModel, Ledger, ModelShape
from testtime.types import Completion, Generation


def gen(prompt: int, cached: int, *generated: int) -> Generation:
    return Generation(
        completions=tuple(Completion(text="x", generated_tokens=g) for g in generated),
        prompt_tokens=prompt, cached_tokens=cached)


def test_parse_budget() -> None:
    b = Budget.parse("tokens=1000,calls=3,seconds=2.5")
    assert (b.generated_tokens, b.calls, b.seconds) == (1000, 3, 2.5)
    assert Budget.parse(None) == Budget()
    with pytest.raises(ValueError, match="bad budget item"):
        Budget.parse("tokenz=5")
    with pytest.raises(ValueError):
        Budget.parse("tokens=-1")


def test_plan_shrinks_samples_then_tokens() -> None:
    ledger = Ledger(budget=Budget(generated_tokens=1000))
    assert ledger.plan(8, 100) == (8, 100)
    assert ledger.plan(16, 100) == (10, 100)
    ledger.record(gen(10, 0, 950))
    assert ledger.plan(4, 100) == (1, 50)
    ledger.record(gen(10, 0, 50))
    with pytest.raises(BudgetExhausted):
        ledger.plan(1, 1)
    assert ledger.exhausted


def test_calls_limit_is_hard() -> None:
    ledger = Ledger(budget=Budget(calls=2))
    for _ in range(2):
        ledger.plan(1, 10)
        ledger.record(gen(5, 0, 10))
    with pytest.raises(BudgetExhausted, match="calls"):
        ledger.plan(1, 10)


def test_verifier_calls_are_billed_as_verifier_tokens() -> None:
    ledger = Ledger()
    ledger.record(gen(100, 20, 5), verifier=True)
    u = ledger.close()
    assert (u.verifier_tokens, u.generated_tokens, u.prompt_tokens, u.calls) == (105, 0, 0, 0)
    assert u.verifier_calls == 1


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
