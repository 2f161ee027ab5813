"""A synthetic sweep on the scripted backend: easy problems agree, hard ones scatter."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

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
