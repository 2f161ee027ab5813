"""docs/architecture.md's worked example: a strategy added in one file, here this one.

``Shortest`` is registered from this test file alone and then runs, unchanged, through the CLI
(``testtime run``, ``testtime sweep``) and the gateway. Its declaration ``whole_replies`` is
all the gateway reads to honour a request's stop strings for it. It is registered for these
tests only, so the registry other tests see is the shipped one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from fastapi.testclient import TestClient
from pydantic import Field
from typer.testing import CliRunner

from testtime.backends.scripted import ScriptedBackend
from testtime.cli import app
from testtime.eval.store import ResultStore
from testtime.serve.app import create_app
from testtime.serve.config import ServeConfig
from testtime.strategies import Context, StrategySettings, strategies
from testtime.types import Problem, Result


class Shortest(StrategySettings):
    """Sample ``n`` replies and answer with the shortest one that states an answer."""

    whole_replies: ClassVar[bool] = True

    n: int = Field(default=4, ge=1, le=64)

    async def run(self, problem: Problem, ctx: Context) -> Result:
        """Sample, then keep the shortest answered reply."""
        candidates = await ctx.sample(problem, self.n, temperature=self.temperature,
                                      max_tokens=self.max_tokens)
        answered = [c for c in candidates if c.answer is not None]
        best = min(answered, key=lambda c: len(c.text), default=None)
        return ctx.result(problem, best.answer if best else None, candidates,
                          text=best.text if best else None)


@pytest.fixture(autouse=True)
def shortest() -> Iterator[None]:
    strategies.register("shortest")(Shortest)
    yield
    strategies.remove("shortest")


def test_it_runs_from_the_cli(tmp_path: Path) -> None:
    task = tmp_path / "t.jsonl"
    task.write_text(json.dumps({"question": "3+4?", "answer": "#### 7"}) + "\n")
    out = tmp_path / "records.jsonl"
    ran = CliRunner().invoke(app, ["run", "--task", str(task), "--strategy", "shortest:n=3",
                                   "--backend", "scripted:The answer is 7.", "--out", str(out),
                                   "--json"])
    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.stdout.strip().splitlines()[-1])["accuracy"] == 1.0
    record = json.loads(out.read_text())
    assert record["strategy"] == "shortest:n=3" and record["answer"] == "7"
    assert len(record["candidates"]) == 3 and record["usage"]["calls"] == 1


def test_it_runs_in_a_sweep(tmp_path: Path) -> None:
    config = tmp_path / "sweep.yaml"
    store = tmp_path / "s.db"
    config.write_text(f"""
tasks:
  - {{spec: "arith:level=1", limit: 2}}
strategies: ["shortest:n=2"]
backends: ["scripted:The answer is 42."]
store: {store}
""")
    ran = CliRunner().invoke(app, ["sweep", str(config), "--quiet"])
    assert ran.exit_code == 0, ran.output
    with ResultStore(store, create=False) as s:
        records = s.records()
    assert len(records) == 2
    assert {r["strategy"] for r in records} == {"shortest:n=2"}
    assert all(r["answer"] == "42" and len(r["candidates"]) == 2 for r in records)


def test_it_answers_through_the_gateway_with_its_declarations() -> None:
    engine = ScriptedBackend.cycle(["Let me think about this at length. The answer is 7.",
                                    "The answer is 5.", "Perhaps the answer is 6."])
    body = {"model": "shortest:n=3@scripted", "stop": ["\n\n"],
            "messages": [{"role": "user", "content": "Pick a number."}]}
    with TestClient(create_app(ServeConfig(), engine)) as gw:
        r = gw.post("/v1/chat/completions", json=body)
        streamed = gw.post("/v1/chat/completions", json={**body, "stream": True})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "The answer is 5."
    assert streamed.status_code == 200 and "data: [DONE]" in streamed.text
    assert engine.requests and all(q.n == 3 and "\n\n" in q.stop for q in engine.requests)
