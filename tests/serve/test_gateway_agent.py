"""Operator tools in the gateway: the config's ``[tools]`` enables them, strategies get them
through the Context, a request may only name enabled ones, and client-declared function tools
are still returned to the client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from testtime.backends.scripted import ScriptedBackend
from testtime.serve.config import ConfigError, load_config
from testtime.types import GenerationRequest, Prompt

CHAT = [{"role": "user", "content": "Mia buys 14 pens at $3 and gets $5 off. What does she pay?"}]


def call(name: str, **arguments: object) -> str:
    return f'<tool_call>{json.dumps({"name": name, "arguments": arguments})}</tool_call>'


def respond(prompt: Prompt, i: int, req: GenerationRequest) -> str:
    if not req.stop:  # a plain chat reply (single), not an agent turn
        return '<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>'
    last = prompt.messages[-1].content
    if "<tool_response>" in last:
        value = last.split("<tool_response>\n")[1].split("\n")[0]
        return f"The answer is {value}."
    if "shout" in prompt.messages[0].content:
        return call("shout", text="pens")
    return call("calculator", expression="14 * 3 - 5")


@pytest.fixture
def operator_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    (tmp_path / "gateway_operator_tools.py").write_text(
        "def shout(text: str) -> str:\n    '''Upper-case a text.'''\n    return text.upper()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "gateway_operator_tools:shout"


def post(http: httpx.Client, model: str, **extra: Any) -> httpx.Response:
    return http.post("/v1/chat/completions",
                     json={"model": model, "messages": CHAT, **extra})


def test_an_enabled_tool_runs_server_side_and_a_disabled_one_is_refused(
        serve: Any, operator_module: str) -> None:
    with serve(ScriptedBackend(responder=respond), allowed_strategies=["agent", "single"],
               tools={"enabled": ["calculator", operator_module]}) as gw, \
            httpx.Client(base_url=gw.url, timeout=60) as http:
        ok = post(http, "agent:tools=calculator@scripted", testtime={"details": True})
        assert ok.status_code == 200, ok.text
        body = ok.json()
        assert body["choices"][0]["testtime"]["answer"] == "37"
        assert "<tool_response>\n37\n</tool_response>" in body["choices"][0]["message"]["content"]
        usage = body["usage"]["testtime"]
        assert usage["tool_runs"] == 1 and usage["tool_seconds"] >= 0
        assert usage["sandbox_runs"] == 0 and usage["calls"] == 2

        shouted = post(http, "agent:tools=shout@scripted", testtime={"details": True})
        assert shouted.status_code == 200, shouted.text
        assert shouted.json()["choices"][0]["testtime"]["answer"] == "PENS"

        for model in ("agent:tools=python@scripted", "agent:tools=calculator+nope@scripted"):
            refused = post(http, model)
            assert refused.status_code == 400, refused.text
            error = refused.json()["error"]
            assert error["code"] == "tool_not_enabled" and error["param"] == "model"
            assert "enabled: calculator, shout" in error["message"]
        bad = post(http, "agent:tools=[calculator;rm]@scripted")
        assert bad.status_code == 400 and "identifiers" in bad.json()["error"]["message"]


def test_without_a_tools_table_no_tool_is_offered_and_code_running_agents_are_off(
        serve: Any) -> None:
    with serve(ScriptedBackend(responder=respond),
               strategies={"helper": "agent:max_turns=2"}) as gw, \
            httpx.Client(base_url=gw.url, timeout=60) as http:
        off = post(http, "agent@scripted")
        assert off.status_code == 400 and off.json()["error"]["code"] == "strategy_not_allowed"
        alias = post(http, "helper", testtime={"details": True})
        assert alias.status_code == 200, alias.text
        choice = alias.json()["choices"][0]
        assert "error: there is no tool 'calculator'; tools: none" in choice["message"]["content"]
        assert alias.json()["usage"]["testtime"]["tool_runs"] == 0


def test_client_function_tools_are_still_returned_to_the_client(serve: Any) -> None:
    declared = [{"type": "function", "function": {
        "name": "get_weather", "parameters": {"type": "object",
                                              "properties": {"city": {"type": "string"}}}}}]
    with serve(ScriptedBackend(responder=respond), allowed_strategies=["agent", "single"],
               tools={"enabled": ["calculator"]}) as gw, \
            httpx.Client(base_url=gw.url, timeout=60) as http:
        single = post(http, "single@scripted", tools=declared)
        assert single.status_code == 200, single.text
        [called] = single.json()["choices"][0]["message"]["tool_calls"]
        assert called["function"]["name"] == "get_weather"
        assert single.json()["usage"]["testtime"]["tool_runs"] == 0
        agent = post(http, "agent:tools=calculator@scripted", tools=declared)
        assert agent.status_code == 400 and agent.json()["error"]["param"] == "tools"


def test_the_tools_table_in_a_config_file(tmp_path: Path, operator_module: str) -> None:
    top = tmp_path / "top.toml"
    top.write_text(f'[serve]\nport = 9000\n\n[tools]\nenabled = ["calculator", '
                   f'"{operator_module}"]\n')
    config = load_config(top, env={})
    assert config.tools.enabled == ["calculator", operator_module]
    assert sorted(config.tools.resolve()) == ["calculator", "shout"]
    nested = tmp_path / "nested.toml"
    nested.write_text('[serve]\nport = 9000\n\n[serve.tools]\nenabled = ["calculator"]\n')
    assert load_config(nested, env={}).tools.enabled == ["calculator"]
    for entry, why in [("nope", "unknown tool 'nope'"), ("no_module_xyz:fn", "cannot import"),
                       ("python:memory_mb=1", "invalid python tool options")]:
        broken = tmp_path / "broken.toml"
        broken.write_text(f'[tools]\nenabled = ["{entry}"]\n')
        with pytest.raises(ConfigError, match=why):
            load_config(broken, env={})
