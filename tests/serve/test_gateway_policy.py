"""auto@MODEL: the operator's compute-optimal policy, chosen per request, on a real server."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from testtime.backends.base import Backend
from testtime.backends.scripted import ScriptedBackend
from testtime.policy import Choice, Policy
from testtime.serve.app import create_app
from testtime.serve.config import ConfigError, ServeConfig


def policy_file(path: Path, hard: str = "weighted-vote:n=8", *, max_tokens: int = 8,
                temperature: float = 0.8) -> Path:
    """Easy problems (the 2-sample probe agrees) stop at the probe; hard ones get ``hard``."""
    def c(spec: str) -> Choice:
        return Choice(spec=f"{spec},max_tokens={max_tokens},temperature={temperature}")

    Policy(probe_k=2, edges=[0.75], temperature=temperature, max_tokens=max_tokens,
           budgets={"30": [c("self-consistency:n=2"), c("self-consistency:n=4")],
                    "100": [c("self-consistency:n=2"), c("early-stop:max_n=6,batch=2")],
                    "400": [c("self-consistency:n=2"), c(hard)]}).save(path)
    return path


def scripted() -> ScriptedBackend:
    """An easy question always gets 5; a hard one scatters over four answers."""
    def respond(prompt: Any, i: int, req: Any) -> str:
        if "hard" in prompt.messages[-1].content:
            return f"The answer is {(req.seed + i) % 4}."
        return "The answer is 5."
    return ScriptedBackend(responder=respond)


def ask(gw: Any, question: str, model: str = "auto@m", **extra: Any) -> Any:
    r = gw.post("/v1/chat/completions", {"model": model, "messages": [
        {"role": "user", "content": question}], "seed": 3, **extra}, timeout=900)
    assert r.status_code == 200, r.text
    return r.json()


def test_auto_spends_by_predicted_difficulty_and_names_its_choice(serve: Any,
                                                                  tmp_path: Path) -> None:
    path = policy_file(tmp_path / "p.json")
    with serve(scripted(), model_name="m", policy=str(path)) as gw:
        models = [m["id"] for m in httpx.get(gw.url + "/v1/models").json()["data"]]
        assert "auto@m" in models
        easy = ask(gw, "easy one")
        hard = ask(gw, "hard one", reasoning_effort="high")
        e, h = easy["choices"][0]["testtime"], hard["choices"][0]["testtime"]
        assert e["adaptive"]["predicted_bin"] == 1 and e["adaptive"]["choice"] == "majority@2"
        assert h["adaptive"]["predicted_bin"] == 2 and h["adaptive"]["choice"] == "weighted@8"
        assert easy["usage"]["testtime"]["samples"] == 2, "the probe is the whole easy answer"
        assert hard["usage"]["testtime"]["samples"] == 8, "the hard one reuses the 2 probes"
        assert hard["usage"]["completion_tokens"] >= 4 * easy["usage"]["completion_tokens"]
        assert str(path) not in str(h), "the policy path is the operator's"
        medium = ask(gw, "hard one")["choices"][0]["testtime"]["adaptive"]
        assert medium["choice"].startswith("early-stop") and medium["policy_budget"] == "100"
        low = ask(gw, "hard one", reasoning_effort="low")["choices"][0]["testtime"]
        assert low["adaptive"]["choice"] == "majority@4"


def test_the_policy_file_is_reloaded_when_it_changes(serve: Any, tmp_path: Path) -> None:
    path = policy_file(tmp_path / "p.json")
    with serve(scripted(), model_name="m", policy=str(path)) as gw:
        first = ask(gw, "hard one", reasoning_effort="high")["choices"][0]["testtime"]
        assert first["adaptive"]["choice"] == "weighted@8"
        time.sleep(0.01)
        policy_file(path, hard="best-of-n:n=6")
        os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
        second = ask(gw, "hard one", reasoning_effort="high")["choices"][0]["testtime"]
        assert second["adaptive"]["choice"] == "best-of@6"
        path.write_text("{broken")
        kept = ask(gw, "hard one", reasoning_effort="high")["choices"][0]["testtime"]
        assert kept["adaptive"]["choice"] == "best-of@6", "a broken edit keeps the last policy"


def test_clients_cannot_name_a_policy(serve: Any, tmp_path: Path) -> None:
    path = policy_file(tmp_path / "p.json")
    with serve(scripted(), model_name="m") as gw:
        r = gw.post("/v1/chat/completions", {"model": "auto@m", "messages": [
            {"role": "user", "content": "easy"}]})
        assert r.status_code == 404 and "policy" in r.json()["error"]["message"]
        for body in ({"model": f"adaptive:policy={path},budget=100@m"},
                     {"model": "m", "testtime": {"strategy": f"adaptive:policy={path},"
                                                             "budget=100"}}):
            r = gw.post("/v1/chat/completions", {**body, "messages": [
                {"role": "user", "content": "easy"}]})
            assert r.status_code == 400, r.text


def test_bad_or_disallowed_policies_fail_at_startup(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"probe_k": 2, "edges": [], "budgets": {"10": [{"spec": "nope:n=2"}]}}')
    for policy, message in ((str(bad), "not a valid policy"),
                            (str(tmp_path / "missing.json"), "does not exist"),
                            ("no-such-model", "no shipped policy")):
        with pytest.raises(ConfigError, match=message):
            create_app(ServeConfig(policy=policy, model_name="m"), scripted())
    missing = f"adaptive:policy=[{tmp_path / 'gone.json'}],budget=64"
    for config in (ServeConfig(strategies={"smart": missing}, model_name="m"),
                   ServeConfig(default_strategy=missing, model_name="m")):
        with pytest.raises(ConfigError, match=r"invalid policy in config.*does not exist"):
            create_app(config, scripted())
    good = policy_file(tmp_path / "p.json")
    with pytest.raises(ConfigError, match="allowed_strategies"):
        create_app(ServeConfig(policy=str(good), model_name="m",
                               allowed_strategies=["single"]), scripted())


def test_shipped_policy_serves_auto_unless_adaptive_is_disallowed(serve: Any) -> None:
    from testtime.policy import shipped_policies

    assert "qwen2.5-coder-0.5b" in shipped_policies()
    from testtime.policy import load_policy

    shipped = load_policy("qwen2.5-coder-0.5b")
    with serve(scripted(), model_name="qwen2.5-coder-0.5b") as gw:
        router = gw.app.state.gateway.router
        assert router.auto == "qwen2.5-coder-0.5b"
        for effort in ("low", "medium", "high"):
            reply = ask(gw, "easy one", "auto@qwen2.5-coder-0.5b", reasoning_effort=effort)
            picked = reply["choices"][0]["testtime"]["adaptive"]
            key, _ = shipped.choose(1, router.auto_budgets[effort])
            one_choice = len({c.spec for c in shipped.budgets[key]}) == 1
            assert (picked["predicted_bin"] is None) == one_choice, "no probe where it is moot"
            _, choice = shipped.choose(picked["predicted_bin"] or 1, router.auto_budgets[effort])
            assert picked["choice"] == choice.label
    with serve(ScriptedBackend(), model_name="qwen2.5-coder-0.5b",
               allowed_strategies=["single"]) as gw:
        assert gw.app.state.gateway.router.auto is None
        r = gw.post("/v1/chat/completions", {"model": "auto@qwen2.5-coder-0.5b", "messages": [
            {"role": "user", "content": "easy"}]})
        assert r.status_code == 404


FINISH = " Finish with a last line of the form 'The answer is N'."


@pytest.mark.model
@pytest.mark.slow
def test_auto_on_the_real_model_spends_more_on_the_hard_problem(serve: Any, qwen05: Backend,
                                                               tmp_path: Path) -> None:
    path = policy_file(tmp_path / "p.json", hard="self-consistency:n=4", max_tokens=96,
                       temperature=1.0)
    with serve(qwen05, policy=str(path), request_timeout=600) as gw:
        model = f"auto@{gw.app.state.gateway.router.upstream_model}"
        easy = ask(gw, "What is 2 + 2?" + FINISH, model, reasoning_effort="high")
        hard = ask(gw, "What is 734291 * 48213 - 918273 * 6571 + 3317 * 871?" + FINISH, model,
                   reasoning_effort="high")
    e, h = easy["choices"][0]["testtime"]["adaptive"], hard["choices"][0]["testtime"]["adaptive"]
    assert (e["predicted_bin"], e["choice"]) == (1, "majority@2")
    assert (h["predicted_bin"], h["choice"]) == (2, "majority@4")
    assert easy["usage"]["testtime"]["samples"] == 2 and hard["usage"]["testtime"]["samples"] == 4
    assert hard["usage"]["completion_tokens"] > 3 * easy["usage"]["completion_tokens"]
