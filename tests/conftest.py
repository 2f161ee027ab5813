"""Shared fixtures: scripted backends for strategy logic, real embedded models for integration."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

import pytest
from hypothesis import settings

from testtime.backends.embedded import EmbeddedBackend
from testtime.models import resolve

# Tests assert behaviour, never wall-clock time: no per-example deadline on a busy machine.
settings.register_profile("testtime", deadline=None)
settings.load_profile("testtime")


def _embedded(model: str, slots: int) -> Iterator[EmbeddedBackend]:
    resolve(model)  # pulls the pack once per machine; fails loudly if it cannot
    backend = EmbeddedBackend(model=model, slots=slots, ctx=1536,
                              threads=int(os.environ.get("TESTTIME_THREADS", os.cpu_count() or 2)))
    backend.start()
    yield backend
    backend._pool.shutdown(wait=True)


@pytest.fixture(scope="session")
def smollm() -> Iterator[EmbeddedBackend]:
    """SmolLM2-135M in process: fast, weak; for integration tests of mechanics."""
    yield from _embedded("smollm2-135m", slots=16)


@pytest.fixture(scope="session")
def qwen05() -> Iterator[EmbeddedBackend]:
    """Qwen2.5-Coder-0.5B in process: strong enough that test-time scaling shows."""
    yield from _embedded("qwen2.5-coder-0.5b", slots=16)


def settled_metrics(engine: EmbeddedBackend) -> dict[str, float]:
    """The engine's counters once it has stopped decoding (a stopped call's last step included)."""
    before = engine.engine_metrics()
    while True:
        time.sleep(0.2)
        now = engine.engine_metrics()
        if now.get("n_decode_total") == before.get("n_decode_total"):
            return now
        before = now


@pytest.fixture
def engine_count() -> Callable[[EmbeddedBackend], float]:
    """Reads an engine's own count of generated tokens (``tokens_predicted_total``) once it
    has stopped decoding; the difference of two reads is what a run made it generate."""
    return lambda engine: settled_metrics(engine)["tokens_predicted_total"]
