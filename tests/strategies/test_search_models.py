"""Every search and sequential strategy end to end on SmolLM2-135M (embedded), on ``arith``,
with the model's confidence as the process scorer, inside a token budget."""

from __future__ import annotations

import asyncio

import pytest

from testtime.backends.embedded import EmbeddedBackend
from testtime.budget import Budget
from testtime.eval.runner import solve
from testtime.strategies import make_strategy
from testtime.tasks.arith import ArithTask
from testtime.types import Generation, GenerationRequest, Result
from testtime.verifiers import make_verifier

STEP = "max_tokens=16,max_depth=3"
SPECS = [
    f"beam:n=4,width=2,{STEP}",
    f"dvts:n=4,width=2,{STEP}",
    f"lookahead:n=2,width=2,lookahead=1,{STEP}",
    f"particle-filter:n=4,{STEP}",
    f"particle-filter:n=4,entropic=true,{STEP}",
    f"mcts:iterations=3,width=2,rollouts=1,rollout_tokens=32,{STEP}",
    "budget-forcing:min_think=24,max_think=40,answer_tokens=8",
    "revision:rounds=1,max_tokens=40",
    "first-finish:n=3,max_tokens=40",
    "multi-temperature:n=3,max_tokens=40",
    "early-stop:max_n=6,batch=3,max_tokens=24",
]
TREE = ("beam", "dvts", "lookahead", "particle-filter", "mcts")
BUDGET = Budget(generated_tokens=160)
IDS = [s.split(":")[0] + ("-entropic" if "entropic" in s else "") for s in SPECS]
CI_IDS = {"particle-filter", "budget-forcing", "multi-temperature", "early-stop"}


@pytest.mark.model
@pytest.mark.slow
@pytest.mark.parametrize("spec", [
    pytest.param(s, marks=pytest.mark.ci) if i in CI_IDS else s
    for s, i in zip(SPECS, IDS, strict=True)
], ids=IDS)
def test_strategy_runs_end_to_end_within_budget(smollm: EmbeddedBackend, spec: str) -> None:
    problems = ArithTask(level=1).problems(2)

    async def go() -> list[Result]:
        return await asyncio.gather(*(
            solve(p, make_strategy(spec), smollm, verifier=make_verifier("confidence"),
                  budget=BUDGET, spec=spec) for p in problems))

    results = asyncio.run(go())
    for result in results:
        assert result.usage.generated_tokens <= 160
        assert result.usage.calls >= 1
        assert result.candidates
        assert result.usage.counted_by == ("engine-timings",)
        if spec.startswith(TREE):
            nodes = result.extra["trace"]
            assert nodes[0]["parent"] is None and len(nodes) > 2
            assert all(0.0 <= n["value"] <= 1.0 for n in nodes[1:])
            assert result.usage.cached_tokens > 0


class Recording:
    """Delegates to a backend and keeps every Generation it returned."""

    def __init__(self, inner: EmbeddedBackend) -> None:
        self.inner = inner
        self.name, self.capabilities, self.cost = inner.name, inner.capabilities, inner.cost
        self.generations: list[Generation] = []

    async def generate(self, req: GenerationRequest) -> Generation:
        gen = await self.inner.generate(req)
        self.generations.append(gen)
        return gen

    async def ready(self) -> None:
        await self.inner.ready()

    async def close(self) -> None:
        """The shared engine stays open."""


@pytest.mark.model
@pytest.mark.slow
@pytest.mark.ci
def test_beam_children_are_served_from_the_prompt_cache(smollm: EmbeddedBackend) -> None:
    problem = ArithTask(level=1).problems(1)[0]
    spec = "beam:n=4,width=4,max_tokens=16,max_depth=3"
    backend = Recording(smollm)
    result = asyncio.run(solve(problem, make_strategy(spec), backend,
                               verifier=make_verifier("confidence"), spec=spec,
                               budget=Budget(generated_tokens=200)))
    assert result.usage.generated_tokens <= 200
    later = backend.generations[1:]
    assert later, "beam search should expand beyond the first step"
    for gen in later:
        assert gen.cached_tokens >= 0.7 * gen.prompt_tokens
    assert result.usage.cached_tokens == sum(g.cached_tokens for g in backend.generations)
