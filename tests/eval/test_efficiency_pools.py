"""bench/efficiency.py replays the GSM8K sweep's own pools where the sweep kept their logprobs,
and never pairs outcomes replayed from two different pools of one problem."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

Sweep = Callable[[int | None], Awaitable[Path]]


@pytest.fixture(scope="module")
def bench(load_bench: Callable[[str], ModuleType]) -> ModuleType:
    return load_bench("efficiency")


def options(bench: ModuleType, store: Path, tmp_path: Path) -> Any:
    return bench.parse(["--model", "scripted", "--pool-n", "4", "--max-tokens", "64",
                        "--temperatures", "0.4", "--sweep", str(store),
                        "--results", str(tmp_path / "r.json")])


async def test_the_sweeps_kept_pools_are_the_benchs_pools(bench: ModuleType, gsm8k_sweep: Sweep,
                                                          tmp_path: Path) -> None:
    args = options(bench, await gsm8k_sweep(5), tmp_path)
    pools = bench.swept_pools(args)
    (key,) = pools
    assert key == bench.pool_key(args, 0.4)
    assert len(pools[key]) == 2
    for pool in pools[key].values():
        assert len(pool["samples"]) == 4 and pool["prompt_tokens"] > 0
        assert all(c["top_logprobs"] and c["logprobs"] for c in pool["samples"])


async def test_a_sweep_without_kept_logprobs_gives_no_pools(bench: ModuleType, gsm8k_sweep: Sweep,
                                                            tmp_path: Path) -> None:
    assert bench.swept_pools(options(bench, await gsm8k_sweep(None), tmp_path)) == {}


async def test_outcomes_from_another_pool_are_replayed_again(bench: ModuleType, gsm8k_sweep: Sweep,
                                                             tmp_path: Path) -> None:
    args = options(bench, await gsm8k_sweep(5), tmp_path)
    pools = bench.swept_pools(args)
    key = bench.pool_key(args, 0.4)
    problems = [p for p in bench.Gsm8kTrainTask().problems(limit=2) if p.id in pools[key]]
    same, other = problems
    results = bench.load_results(args)
    setting = bench.settings(args)[0].key
    results["pools"][key] = {same.id: bench.fingerprint(pools[key][same.id]),
                             other.id: "drawn-elsewhere"}
    results["outcomes"][setting] = {same.id: {"correct": 1.0}, other.id: {"correct": 0.0}}
    bench.settle_pools(problems, pools, results, args)
    assert set(results["outcomes"][setting]) == {same.id}
    assert results["pools"][key][other.id] == bench.fingerprint(pools[key][other.id])
    for s in bench.settings(args):
        results["outcomes"].setdefault(s.key, {})[same.id] = {"correct": 1.0}
    assert not bench.needs_pool(results, args, 0.4, same)
    assert bench.needs_pool(results, args, 0.4, other)
