"""A sweep's stored units read back as pools: only the asked strategy, task and model, with
the samples the sweep kept; and bench/tools.py's chain-of-thought pools built from them."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from testtime.backends.scripted import ScriptedBackend
from testtime.eval.store import ResultStore
from testtime.eval.sweep import SweepConfig, expand, run_unit
from testtime.eval.swept import swept_units

BENCH = Path(__file__).resolve().parents[2] / "bench" / "tools.py"
POOLED = "weighted-vote:n=3,temperature=0.4,max_tokens=64,verifier=confidence"


async def sweep(tmp_path: Path, keep: int | None) -> Path:
    cfg = SweepConfig(tasks=[{"spec": "gsm8k-train", "limit": 2}],
                      strategies=[POOLED, "single:max_tokens=64"], backends=["scripted"],
                      store=str(tmp_path / "s.db"), keep_logprobs=keep)
    backend = ScriptedBackend(top_logprobs=lambda prompt, text: {"7": -0.2, "8": -1.9})
    with ResultStore(cfg.store) as store:
        for unit in expand(cfg):
            store.put(unit, await run_unit(unit, backend))
    return Path(cfg.store)


async def test_units_of_one_strategy_come_back_with_their_kept_samples(tmp_path: Path) -> None:
    store = await sweep(tmp_path, keep=2)
    units = list(swept_units(store, task="gsm8k-train", model="scripted",
                             strategy="weighted-vote"))
    assert len(units) == 2 and len({u.problem_id for u in units}) == 2
    for unit in units:
        assert unit.strategy.registered_name == "weighted-vote"
        assert unit.kept is not None and len(unit.kept) == 3
        assert all(c["top_logprobs"] for c in unit.kept)
    singles = list(swept_units(store, task="gsm8k-train", model="scripted", strategy="single"))
    assert len(singles) == 2


async def test_other_tasks_models_and_unkept_sweeps_are_told_apart(tmp_path: Path) -> None:
    store = await sweep(tmp_path, keep=None)
    assert not list(swept_units(store, task="arith", model="scripted", strategy="single"))
    assert not list(swept_units(store, task="gsm8k-train", model="qwen", strategy="single"))
    units = list(swept_units(store, task="gsm8k-train", model="scripted", strategy="single"))
    assert units and all(u.kept is None for u in units)


async def test_the_tools_bench_reads_chain_of_thought_from_the_sweep(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("tools_bench", BENCH)
    assert spec and spec.loader
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench
    spec.loader.exec_module(bench)
    store = await sweep(tmp_path, keep=None)
    pools = bench.swept_cot(store, "scripted", 64)
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
    assert bench.swept_cot(store, "scripted", 128) == {}
