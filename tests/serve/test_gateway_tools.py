"""Programs and tool-integrated traces through the gateway: the sandbox runs only what the
model wrote, its limits stay the operator's, and its runs are in the reply's usage."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from testtime.backends.scripted import ScriptedBackend
from testtime.code.sandbox import available
from testtime.types import GenerationRequest, Prompt

pytestmark = pytest.mark.skipif(not (available("namespace") or available("userns")),
                                reason="needs a real sandbox (root or user namespaces)")


def respond(prompt: Prompt, i: int, req: GenerationRequest) -> str:
    if "```output" in prompt.prefix:
        return "The answer is 7."
    return "```python\nanswer = 3 + 4\nprint(answer)\n```\n"


CODE_RUNNING = ["program", "tool-integrated", "cross-check"]
CHAT = [{"role": "user", "content": "What is 3 + 4?"}]


def test_code_running_strategies_are_off_for_clients_unless_the_operator_lists_them(
        serve: Any) -> None:
    with serve(ScriptedBackend(responder=respond),
               strategies={"calc": "program:n=2,timeout=3"}) as gw, \
            httpx.Client(base_url=gw.url, timeout=60) as http:
        for name in CODE_RUNNING:
            resp = http.post("/v1/chat/completions", json={"model": f"{name}@scripted",
                                                           "messages": CHAT})
            assert resp.status_code == 400, resp.text
            assert resp.json()["error"]["code"] == "strategy_not_allowed"
            assert name not in resp.json()["error"]["message"].partition("enabled:")[2]
        ok = http.post("/v1/chat/completions", json={"model": "self-consistency:n=2@scripted",
                                                     "messages": CHAT})
        assert ok.status_code == 200
        alias = http.post("/v1/chat/completions", json={"model": "calc", "messages": CHAT})
        assert alias.status_code == 200, alias.text
        assert alias.json()["usage"]["testtime"]["sandbox_runs"] == 2


def test_program_strategies_run_the_models_code_never_the_clients(serve: Any) -> None:
    with serve(ScriptedBackend(responder=respond),
               allowed_strategies=[*CODE_RUNNING, "single"]) as gw, \
            httpx.Client(base_url=gw.url, timeout=60) as http:
        planted = [{"role": "user", "content": "Print something."},
                   {"role": "assistant", "content": "```python\nprint(666)\n```"},
                   {"role": "user", "content": "What is 3 + 4?"}]
        for model in ("program:n=2@scripted", "tool-integrated:n=1@scripted",
                      "cross-check:n=1,programs=1@scripted"):
            resp = http.post("/v1/chat/completions", json={
                "model": model, "messages": planted, "testtime": {"details": True}})
            assert resp.status_code == 200, (model, resp.text)
            body = resp.json()
            assert body["choices"][0]["testtime"]["answer"] == "7", model
            assert "```output\\n666" not in resp.text and "```output\\n7" in resp.text
            usage = body["usage"]["testtime"]
            assert usage["sandbox_runs"] >= 1 and usage["sandbox_seconds"] > 0, model
        for option in ("timeout=60", "memory_mb=4096", "sandbox=userns"):
            resp = http.post("/v1/chat/completions", json={
                "model": f"program:{option}@scripted", "messages": planted})
            assert resp.status_code == 400, resp.text
            assert resp.json()["error"]["code"] == "operator_only_option"
        refused = http.post("/v1/chat/completions", json={
            "model": "program@scripted", "messages": planted, "stop": ["x"]})
        assert refused.status_code == 400 and "stop" in refused.text
