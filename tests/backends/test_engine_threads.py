"""Engine threads: one process-wide budget shared by the embedded engines, and no spinning."""

from __future__ import annotations

from pathlib import Path

import pytest

from testtime.backends.base import make_backend
from testtime.backends.embedded import EmbeddedBackend, EmbeddedSettings, engine_params
from testtime.backends.threads import ENGINE_THREADS, ThreadBudget
from testtime.registry import SpecError


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
