"""A synthetic sweep on the scripted backend (easy problems agree, hard ones scatter), a small
GSM8K sweep that keeps its samples, and the bench scripts loaded as modules."""

from __future__ import annotations

import hashlib
import importlib.util
import re
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType

import pytest

from testtime.backends.scripted import ScriptedBackend
from testtime.eval.store import ResultStore
from testtime.eval.sweep import SweepConfig, expand, run_unit
from testtime.types import GenerationRequest, Prompt

P_CORRECT = {1: 0.95, 2: 0.8, 3: 0.55, 4: 0.4, 5: 0.3}


def _u(*parts: object) -> float:
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()
    return int(digest[:8], 16) / 0xFFFFFFFF


def synthetic_backend() -> ScriptedBackend:
    """Right with a level-dependent probability; wrong answers spread over a few values.

    The confidence (logprob) of a right answer is high more often than that of a wrong one.
    """
    truth: dict[str, bool] = {}

    def respond(prompt: Prompt, i: int, req: GenerationRequest) -> str:
        text = prompt.messages[-1].content
        expr = re.search(r"What is (.+?)\?", text)
        assert expr is not None
        value = eval(expr.group(1), {"__builtins__": {}})  # digits and + - * ( ) only
        level = 1 + int(_u("level", expr.group(1)) * 5)
        right = _u(text, req.seed, i) < P_CORRECT[level]
        offset = (-3, -2, -1, 1, 2, 3)[int(_u("w", text, req.seed, i) * 6)]
        answer = value if right else value + offset
        pad = " step" * (10 + 10 * level)
        out = f"Work{pad} [{req.seed}-{i}]. The answer is {answer}."
        truth[out] = right
        return out

    def confidence(text: str) -> float:
        high = _u("conf", text) < (0.8 if truth.get(text) else 0.3)
        return -0.05 if high else -0.4

    return ScriptedBackend(responder=respond, logprob=confidence)


@pytest.fixture(scope="session")
def synthetic_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store of 40 arith problems × (single, weighted-vote:n=16) on the synthetic backend."""
    import asyncio

    path = tmp_path_factory.mktemp("synthetic") / "sweep.db"
    cfg = SweepConfig(tasks=[{"spec": "arith:level=1+2+3+4+5", "limit": 40}],
                      strategies=["single", "weighted-vote:n=16,verifier=confidence"],
                      backends=["scripted"], store=str(path))
    backend = synthetic_backend()

    async def fill() -> None:
        with ResultStore(path) as store:
            for unit in expand(cfg):
                store.put(unit, await run_unit(unit, backend))

    asyncio.run(fill())
    return path


BENCH = Path(__file__).resolve().parents[2] / "bench"
POOLED = "weighted-vote:n=4,temperature=0.4,max_tokens=64,verifier=confidence"
"""The pool of ``gsm8k_sweep``: 4 samples at T=0.4, as bench/efficiency.py's ``--pool-n 4``."""


@pytest.fixture(scope="session")
def load_bench() -> Callable[[str], ModuleType]:
    """Loads ``bench/NAME.py`` as a module (registered, so its dataclasses resolve)."""
    def load(name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(f"{name}_bench", BENCH / f"{name}.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module
    return load


@pytest.fixture
def gsm8k_sweep(tmp_path: Path) -> Callable[[int | None], Awaitable[Path]]:
    """Sweeps 2 GSM8K training problems on the scripted backend with ``POOLED`` and greedy
    decoding, keeping the given number of top logprobs (``None``: no traces)."""
    async def sweep(keep: int | None) -> Path:
        cfg = SweepConfig(tasks=[{"spec": "gsm8k-train", "limit": 2}],
                          strategies=[POOLED, "single:max_tokens=64"], backends=["scripted"],
                          store=str(tmp_path / "gsm8k.db"), keep_logprobs=keep)
        backend = ScriptedBackend(top_logprobs=lambda prompt, text: {"7": -0.2, "8": -1.9})
        with ResultStore(cfg.store) as store:
            for unit in expand(cfg):
                store.put(unit, await run_unit(unit, backend))
        return Path(cfg.store)
    return sweep
