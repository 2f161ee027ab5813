"""A sweep's stored units read back as pools: only the asked strategy, task and model, with
the samples the sweep kept; and bench/tools.py's pools: chain of thought from the sweep,
programs and tool-integrated traces drawn, several problems at once, cached."""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType

import pytest

from testtime.backends.scripted import ScriptedBackend
from testtime.code.sandbox import available
from testtime.eval.store import ResultStore
from testtime.eval.swept import swept_units
from testtime.tasks.gsm8k_train import Gsm8kTrainTask
from testtime.types import GenerationRequest, Prompt

Sweep = Callable[[int | None], Awaitable[Path]]
NEEDS_BOX = pytest.mark.skipif(not (available("namespace") or available("userns")),
                               reason="needs a real sandbox (root or user namespaces)")


@pytest.fixture(scope="module")
def tools(load_bench: Callable[[str], ModuleType]) -> ModuleType:
    return load_bench("tools")


async def test_units_of_one_strategy_come_back_with_their_kept_samples(gsm8k_sweep: Sweep
                                                                       ) -> None:
    store = await gsm8k_sweep(2)
    assert all(u.kept is None for u in swept_units(
        store, task="gsm8k-train", model="scripted", strategy="weighted-vote"))
    units = list(swept_units(store, task="gsm8k-train", model="scripted",
                             strategy="weighted-vote", with_kept=True))
    assert len(units) == 2 and len({u.problem_id for u in units}) == 2
    for unit in units:
        assert unit.strategy.registered_name == "weighted-vote"
        assert unit.kept is not None and len(unit.kept) == 4
        assert all(c["top_logprobs"] for c in unit.kept)
    singles = list(swept_units(store, task="gsm8k-train", model="scripted", strategy="single"))
    assert len(singles) == 2


async def test_other_tasks_models_and_unkept_sweeps_are_told_apart(gsm8k_sweep: Sweep) -> None:
    store = await gsm8k_sweep(None)
    assert not list(swept_units(store, task="arith", model="scripted", strategy="single"))
    assert not list(swept_units(store, task="gsm8k-train", model="qwen", strategy="single"))
    units = list(swept_units(store, task="gsm8k-train", model="scripted", strategy="single",
                             with_kept=True))
    assert units and all(u.kept is None for u in units)


async def test_the_tools_bench_reads_chain_of_thought_from_the_sweep(
        tools: ModuleType, gsm8k_sweep: Sweep) -> None:
    store = await gsm8k_sweep(None)
    pools = tools.swept_cot(store, "scripted", 64)
    assert len(pools) == 2
    with ResultStore(store, create=False) as opened:
        records = {r["problem_id"]: r for r in opened.records()
                   if r["strategy"].startswith("weighted-vote")}
    for problem_id, pool in pools.items():
        assert set(pool) == {"cot T=0.4"}
        rec = records[problem_id]
        assert pool["cot T=0.4"]["answers"] == [c["answer"] for c in rec["candidates"]]
        usage = rec["usage"]
        assert pool["cot T=0.4"]["tokens"] == usage["prompt_tokens"] + usage["generated_tokens"]
    assert tools.swept_cot(store, "scripted", 128) == {}


@NEEDS_BOX
async def test_the_tools_bench_draws_programs_and_tool_traces_and_caches_them(
        tools: ModuleType, tmp_path: Path) -> None:
    def respond(prompt: Prompt, i: int, req: GenerationRequest) -> str:
        if "```output" in prompt.prefix:
            return "So the answer is 42."
        return "```python\nanswer = 6 * 7\nprint(answer)\n```\n"

    backend = ScriptedBackend(responder=respond, delay=0.01)
    args = argparse.Namespace(model="scripted", seed=0, k=2, temperature=0.7, max_tokens=64,
                              concurrency=2, sweep=Path("swept.db"),
                              pool=str(tmp_path / "pool.json"))
    problems = Gsm8kTrainTask().problems(limit=3, seed=0)
    pools = {problems[0].id: {"program": {"answers": ["1", "1"], "tokens": 9,
                                          "sandbox_runs": 2}}}
    await tools.draw_pools(problems, backend, args, pools)
    assert pools[problems[0].id]["program"]["answers"] == ["1", "1"], "a drawn pool is kept"
    for problem in problems:
        assert set(pools[problem.id]) == {"program", "tool"}
    for problem in problems[1:]:
        for kind in ("program", "tool"):
            pool = pools[problem.id][kind]
            assert pool["answers"] == ["42", "42"] and pool["sandbox_runs"] == 2
            assert pool["tokens"] > 0
    cached = json.loads(Path(args.pool).read_text())
    assert cached == {"key": tools.pool_key(args), "pools": pools}
