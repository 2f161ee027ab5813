"""Early stopping scored from a pool agrees with the early-stop strategy run on those samples."""

from __future__ import annotations

import numpy as np
import pytest

from testtime.backends.scripted import ScriptedBackend
from testtime.eval.curves import Pool
from testtime.eval.replay import ReplayBackend
from testtime.eval.stopping import early_stop_choices, pool_orders, replay_early_stop, replays
from testtime.policy import Choice
from testtime.strategies import make_strategy
from testtime.strategies.base import Context
from testtime.types import GenerationRequest, Problem

PROBLEM = Problem(id="p", question="What is 2 + 3?", reference="5")
ANSWERS = ["5", "3", "5", "7", "5", "3", "5", "5", "9", "3"]
STEPS = [5, 9, 3, 12, 7, 4, 8, 6, 2, 10]
SOURCE = "self-consistency:n=10,max_tokens=64"


async def pool_completions() -> list:  # type: ignore[type-arg]
    texts = ["step " * k + f"The answer is {a}." for k, a in zip(STEPS, ANSWERS, strict=True)]
    whole = await ScriptedBackend.cycle(texts).generate(
        GenerationRequest(prompt=PROBLEM.prompt(), n=len(texts), max_tokens=64))
    return list(whole.completions)


@pytest.mark.parametrize("spec", ["early-stop:max_n=10,batch=1,threshold=0.8,max_tokens=64",
                                  "early-stop:max_n=10,batch=2,threshold=0.85,max_tokens=64",
                                  "early-stop:max_n=8,batch=4,threshold=0.8,max_tokens=64"])
async def test_the_replay_is_the_strategy_run_after_a_probe_on_each_order(spec: str) -> None:
    completions = await pool_completions()
    strategy = make_strategy(spec)
    probe_k, orders = 2, 24
    correct, tokens, drawn = [], [], []
    for order in pool_orders(len(completions), probe_k, orders):
        ctx = Context(backend=ReplayBackend([completions[j] for j in order]))
        probe = await ctx.sample(PROBLEM, probe_k, temperature=strategy.temperature,
                                 max_tokens=strategy.max_tokens)
        ctx.offer(PROBLEM, probe, temperature=strategy.temperature,
                  max_tokens=strategy.max_tokens)
        result = await strategy.run(PROBLEM, ctx)
        correct.append(result.answer == "5")
        tokens.append(result.usage.generated_tokens)
        drawn.append(len(result.candidates))
    pool = Pool.of([{"answer": a, "correct": a == "5"} for a in ANSWERS])
    generated = np.array([c.generated_tokens for c in completions], dtype=float)
    replay = replay_early_stop(pool, generated, strategy, probe_k, orders=orders)
    assert replay.accuracy == pytest.approx(np.mean(correct))
    assert replay.generated_tokens == pytest.approx(np.mean(tokens))
    assert replay.samples == pytest.approx(np.mean(np.maximum(drawn, probe_k)))
    assert min(drawn) < max(drawn), "the orders must stop at different points"


async def test_a_stop_inside_the_probe_still_pays_for_the_whole_probe() -> None:
    completions = await pool_completions()
    strategy = make_strategy("early-stop:max_n=10,batch=1,threshold=0.8,max_tokens=64")
    pool = Pool.of([{"answer": "5", "correct": True}] * 10)
    generated = np.array([c.generated_tokens for c in completions], dtype=float)
    replay = replay_early_stop(pool, generated, strategy, probe_k=4)
    assert replay.samples == 4 and replay.generated_tokens == generated[:4].sum()
    assert replay.accuracy == 1.0


def test_only_early_stops_sampling_like_the_pool_are_replayed() -> None:
    made = early_stop_choices(SOURCE, 10)
    assert made and all(replays(c, SOURCE, 10) for c in made)
    assert all(c.strategy().max_n == 10 for c in made)
    assert not replays(Choice(spec="early-stop:max_n=10,max_tokens=128"), SOURCE, 10)
    assert not replays(Choice(spec="early-stop:max_n=10,temperature=0.3,max_tokens=64"),
                       SOURCE, 10)
    assert not replays(Choice(spec="early-stop:max_n=16,max_tokens=64"), SOURCE, 10), \
        "the pool holds only 10 samples"
    assert not replays(Choice(spec="self-consistency:n=4,max_tokens=64"), SOURCE, 10)
    assert not replays(Choice(spec="early-stop:max_n=10,max_tokens=16"),
                       "no-thinking:n=10,max_tokens=16", 10), \
        "no-thinking answers are drawn from a prefilled reply, early stopping from the question"
