"""The shared key counts and the remote backend, in process (no cluster)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from ray.exceptions import ActorDiedError

from testtime.backends.base import BackendError
from testtime.backends.scripted import ScriptedBackend
from testtime.distributed.serve_engine import RemoteBackend
from testtime.distributed.serve_shared import KeyCounts, MetricsHub, SharedKeyGuard
from testtime.serve.config import KeyConfig
from testtime.serve.errors import ApiError
from testtime.serve.protection import Caller
from testtime.types import GenerationRequest, Prompt


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_counts_refuse_past_rpm_and_concurrency() -> None:
    counts = KeyCounts({"k": KeyConfig(name="kay", rpm=3, concurrency=2)}, lease_ttl=100)
    first, second = counts.admit("k"), counts.admit("k")
    assert isinstance(first, int) and isinstance(second, int)
    busy = counts.admit("k")
    assert not isinstance(busy, int)
    assert (busy[0], busy[1], busy[3]) == ("concurrency", 429, "rate_limit_exceeded")
    counts.release(first)
    assert isinstance(counts.admit("k"), int)
    counts.release(second)
    refused = counts.admit("k")
    assert not isinstance(refused, int) and refused[0] == "rpm" and "Retry-After" in refused[4]


def test_a_lost_lease_is_released_after_its_ttl() -> None:
    clock = Clock()
    counts = KeyCounts({"k": KeyConfig(concurrency=1)}, lease_ttl=30, clock=clock)
    assert isinstance(counts.admit("k"), int)
    assert not isinstance(counts.admit("k"), int)
    clock.now += 31
    assert isinstance(counts.admit("k"), int)
    assert counts.running() == 1


class Local:
    """Calls an in-process actor object the way Ray calls an actor handle."""

    def __init__(self, target: Any) -> None:
        self.target = target

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.target, name)

        class Remote:
            @staticmethod
            def remote(*args: Any) -> Any:
                return method(*args)

        return Remote


def test_shared_guard_raises_the_actors_refusal_and_reports_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import testtime.distributed.serve_shared as shared

    monkeypatch.setattr(shared, "_get", lambda value: value)
    keys = {"k": KeyConfig(name="kay", rpm=1, budget_tokens=50)}
    counts = KeyCounts(keys, lease_ttl=100)
    refusals: list[tuple[str, str]] = []
    guard = SharedKeyGuard(keys, on_refuse=lambda *a: refusals.append(a), counts=Local(counts))
    who = guard.authenticate("Bearer k")
    assert who.remaining == 50
    guard.admit(who).release()
    with pytest.raises(ApiError) as refused:
        guard.admit(who)
    assert refused.value.status == 429 and refused.value.headers["Retry-After"]
    assert refusals == [("kay", "rpm")]
    guard.charge(Caller("kay", "k", 50), 20)
    assert guard.spent() == {"kay": 20} and guard.remaining("k") == 30


def test_hub_sums_gauges_over_replicas_and_counts_requests() -> None:
    hub = MetricsHub()
    hub.observe("a", "/health", 200, 0.01, {"g": ("a gauge", 2.0)})
    hub.observe("b", "/health", 200, 0.01, {"g": ("a gauge", 3.0)})
    hub.report("a", {"g": ("a gauge", 1.0)})
    text = hub.render()
    assert 'testtime_gateway_requests_total{endpoint="/health",status="200"} 2' in text
    assert "\ng 4\n" in text
    assert hub.requests_by_replica() == {"a": 1, "b": 1}


class Engine:
    """An engine 'deployment' whose first ``deaths`` calls die as a killed replica's do."""

    def __init__(self, deaths: int = 0) -> None:
        self.backend = ScriptedBackend.cycle(["The answer is 1.", "The answer is 2."])
        self.deaths = deaths
        self.calls: list[GenerationRequest] = []

    async def _generate(self, req: GenerationRequest) -> Any:
        self.calls.append(req)
        if self.deaths:
            self.deaths -= 1
            raise ActorDiedError()
        return await self.backend.generate(req)

    @property
    def generate(self) -> Any:
        engine = self

        class Method:
            @staticmethod
            def remote(req: GenerationRequest) -> Any:
                return engine._generate(req)

        return Method


def request(n: int) -> GenerationRequest:
    return GenerationRequest(prompt=Prompt.chat("hi"), n=n, seed=10)


def test_samples_are_split_over_replicas_with_shifted_seeds() -> None:
    engine = Engine()
    remote = RemoteBackend(engine, "scripted:x", spread=2)
    gen = asyncio.run(remote.generate(request(5)))
    assert sorted((c.n, c.seed) for c in engine.calls) == [(2, 13), (3, 10)]
    assert len(gen.completions) == 5
    one = asyncio.run(ScriptedBackend().generate(request(1)))
    assert gen.prompt_tokens == 2 * one.prompt_tokens


def test_a_call_lost_with_its_replica_is_retried_then_fails_as_backend_error() -> None:
    engine = Engine(deaths=1)
    remote = RemoteBackend(engine, "scripted:x", retries=1)
    assert len(asyncio.run(remote.generate(request(1))).completions) == 1
    assert len(engine.calls) == 2 and remote.lost == 1
    dying = RemoteBackend(Engine(deaths=5), "scripted:x", retries=2)
    with pytest.raises(BackendError, match="engine replica lost"):
        asyncio.run(dying.generate(request(1)))
