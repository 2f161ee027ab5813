"""Engine threads: one process-wide budget shared by the embedded engines, and no spinning."""

from __future__ import annotations

from pathlib import Path

import pytest

from testtime.backends.base import make_backend
from testtime.backends.cpuload import OtherLoad, ThreadGovernor, threads_left
from testtime.backends.embedded import EmbeddedBackend, EmbeddedSettings, engine_params
from testtime.backends.threads import ENGINE_THREADS, ThreadBudget
from testtime.registry import SpecError
from testtime.types import GenerationRequest, Prompt


class Engine:
    """A stand-in engine (the budget holds engines weakly)."""


def test_engines_share_the_budget_and_explicit_threads_count_against_it() -> None:
    budget = ThreadBudget(total=8)
    policy, judge, pinned = Engine(), Engine(), Engine()
    budget.join(policy, None)
    assert budget.threads_for(policy) == 8
    budget.join(judge, None)
    assert budget.threads_for(policy) == budget.threads_for(judge) == 4
    budget.join(pinned, 2)
    assert budget.threads_for(pinned) == 2 and budget.threads_for(judge) == 3
    budget.leave(pinned)
    del judge
    assert budget.engines() == 1 and budget.threads_for(policy) == 8


def test_a_tiny_budget_still_gives_every_engine_a_thread() -> None:
    budget = ThreadBudget(total=1)
    a, b = Engine(), Engine()
    budget.join(a, None)
    budget.join(b, None)
    assert budget.threads_for(a) == budget.threads_for(b) == 1


def test_budget_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESTTIME_ENGINE_THREADS", "3")
    assert ThreadBudget().total == 3
    monkeypatch.setenv("TESTTIME_ENGINE_THREADS", "lots")
    assert ThreadBudget().total >= 1


async def test_embedded_engines_in_one_process_split_the_process_budget(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESTTIME_ENGINE_THREADS", "6")
    before = ENGINE_THREADS.engines()
    policy = EmbeddedBackend(model="smollm2-135m")
    judge = EmbeddedBackend(model="smollm2-135m")
    try:
        assert ENGINE_THREADS.engines() == before + 2
        if before == 0:
            assert ENGINE_THREADS.threads_for(policy) == ENGINE_THREADS.threads_for(judge) == 3
    finally:
        await judge.close()
    assert ENGINE_THREADS.engines() == before + 1
    await policy.close()
    assert ENGINE_THREADS.engines() == before


def test_engine_params_do_not_spin_by_default_and_take_the_spec_options() -> None:
    path = Path("model.gguf")
    p = engine_params(EmbeddedSettings(), path, threads=3)
    assert (p.cpuparams.poll, p.cpuparams_batch.poll) == (0, 0)
    assert (p.cpuparams.n_threads, p.cpuparams_batch.n_threads) == (3, 3)
    backend = make_backend("embedded:smollm2-135m,threads=2,batch_threads=1,poll=50")
    assert isinstance(backend, EmbeddedBackend)
    p = engine_params(backend.settings, path, threads=7)
    assert (p.cpuparams.n_threads, p.cpuparams_batch.n_threads) == (2, 1)
    assert (p.cpuparams.poll, p.cpuparams_batch.poll) == (50, 50)
    with pytest.raises(SpecError, match="poll"):
        make_backend("embedded:smollm2-135m,poll=101")


class FakeLoad(OtherLoad):
    """Other processes' load as a test scripts it: each reading pops the next value."""

    def __init__(self, readings: list[float], cpus: int = 2) -> None:
        self.readings = readings
        self.cpus = set(range(cpus))

    def read(self) -> float | None:
        return self.readings.pop(0) if self.readings else None


class FakeEngine:
    """An engine that records the thread counts it was rebuilt with."""

    def __init__(self, share: int = 2) -> None:
        self.threads: int | None = share
        self.share = share
        self.rebuilt: list[int] = []

    def thread_share(self) -> int:
        return self.share

    def rethread(self, threads: int) -> None:
        self.threads = threads
        self.rebuilt.append(threads)


def test_threads_left_scale_with_the_free_cores() -> None:
    assert threads_left(2, 0.0, 2) == 2
    assert threads_left(2, 1.0, 2) == 1  # a busy loop on one of two cores
    assert threads_left(2, 2.0, 2) == 1  # never fewer than one
    assert threads_left(8, 2.0, 8) == 6
    assert threads_left(4, 0.0, 8) == 4  # two engines sharing 8 cores: each its share


def test_other_load_subtracts_this_process_and_divides_by_wall_time() -> None:
    counts = iter([(10.0, 1.0), (13.0, 2.0), (13.5, 3.0)])  # busy CPU s, own CPU s
    clock = iter([0.0, 2.0, 3.0])
    load = OtherLoad(counts=lambda cpus: next(counts), clock=lambda: next(clock))
    assert load.read() == pytest.approx(1.0)  # 3 s busy, 1 of them ours, over 2 s
    assert load.read() == 0.0  # we were busier than the whole machine counted: clipped


def test_other_load_without_proc_reads_nothing() -> None:
    load = OtherLoad(counts=lambda cpus: None)
    assert load.read() is None


def test_governor_changes_threads_only_when_readings_agree_and_after_a_cooldown() -> None:
    engine = FakeEngine(share=2)
    load = FakeLoad([1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    governor = ThreadGovernor(engine, every=3600, agree=3, cooldown=0.0, load=load)
    try:
        assert [governor.step() for _ in range(5)] == [None, None, None, None, 1]
        assert engine.rebuilt == [1]
        assert [governor.step() for _ in range(3)] == [None, None, 2]
        assert engine.rebuilt == [1, 2]
        slow = ThreadGovernor(engine, every=3600, cooldown=3600.0,
                              load=FakeLoad([1.0, 1.0, 1.0]))
        assert [slow.step() for _ in range(3)] == [None, None, None]  # still cooling down
        slow.stop()
    finally:
        governor.stop()


def test_explicit_threads_are_not_governed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TESTTIME_ENGINE_THREADS", raising=False)
    assert EmbeddedBackend(model="smollm2-135m").governed
    assert not EmbeddedBackend(model="smollm2-135m", threads=2).governed
    monkeypatch.setenv("TESTTIME_ENGINE_THREADS", "2")
    assert not EmbeddedBackend(model="smollm2-135m").governed


@pytest.mark.model
async def test_a_rethreaded_engine_keeps_serving_and_counting() -> None:
    backend = EmbeddedBackend(model="smollm2-135m", slots=4)
    try:
        req = GenerationRequest(prompt=Prompt.chat("Count to five."), n=2, max_tokens=8,
                                temperature=0.8, seed=1)
        first = await backend.generate(req)
        before = backend.threads
        backend.rethread(1 if before != 1 else 2)
        assert backend.threads != before and backend.rebuilds == 1
        second = await backend.generate(req)
        generated = sum(c.generated_tokens for g in (first, second) for c in g.completions)
        # the first engine's counters are kept when it is retired
        assert backend.engine_metrics()["tokens_predicted_total"] == generated
    finally:
        await backend.close()
