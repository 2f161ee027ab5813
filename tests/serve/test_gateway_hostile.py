"""A hostile client against a real `testtime serve` process on loopback.

Every way of naming a URL, backend, model, path or remote code through the model name,
``testtime.strategy`` and nested verifier specs must be refused with a 4xx; a trap listener
that such specs point at must see no connection at all, and the server's upstream key must
appear in no response. A second listener plays the upstream the operator did configure: it
gets the key, and its error body stays in the server log.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import testtime.strategies
import testtime.verifiers
from testtime.registry import CLIENT, field_trust, settings_class
from testtime.serve.config import DEFAULT_VERIFIERS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])

SECRET = "sk-server-secret-3b1f0c9e"
UPSTREAM_BODY = "UPSTREAM-PRIVATE-BODY-7781"


class Listener:
    """A loopback TCP server that counts connections and answers each with an HTTP 500."""

    def __init__(self, body: str) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])
        self.body = body.encode()
        self.connections = 0
        self.received: list[bytes] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                conn.settimeout(5)
                try:
                    self.received.append(conn.recv(65536))
                    conn.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain"
                                 b"\r\nContent-Length: " + str(len(self.body)).encode()
                                 + b"\r\nConnection: close\r\n\r\n" + self.body)
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


class Gateway:
    """``testtime serve`` in a child process, its stderr (the JSON log) kept in a file."""

    def __init__(self, tmp: Path, config: dict[str, Any]) -> None:
        self.port = free_port()
        path = tmp / "gateway.json"
        path.write_text(json.dumps({"serve": config}))
        self.log = tmp / "gateway.log"
        env = {**os.environ, "OPENAI_API_KEY": SECRET, "TESTTIME_API_KEY": SECRET,
               "TESTTIME_API_KEYS": ""}
        with self.log.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "testtime.cli", "serve", "--config", str(path),
                 "--port", str(self.port)], stdout=subprocess.DEVNULL, stderr=err, env=env)
        self.http = httpx.Client(base_url=self.url, timeout=60)
        deadline = time.monotonic() + 60
        while True:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                if self.http.get("/health").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "gateway did not start"
            time.sleep(0.1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    trap = Listener("TRAP-BODY")
    upstream = Listener(UPSTREAM_BODY)
    judged = (f"best-of-n:n=1,verifier=[judge:backend=[openai:{upstream.url},model=x,"
              "retries=0]]")
    gw = Gateway(tmp_path_factory.mktemp("hostile"), {
        "backend": "scripted:text=The answer is 2.", "model_name": "scripted",
        "strategies": {"judged": judged, "sc2": "self-consistency:n=2"},
        "max_choices": 4, "request_budget": "tokens=512",
    })
    try:
        yield {"trap": trap, "upstream": upstream, "gw": gw}
    finally:
        gw.stop()
        trap.close()
        upstream.close()


def hostile_specs(trap: str) -> list[str]:
    """Specs that try to reach a URL, backend, model, file or remote code."""
    return [
        f"best-of-n:n=1,verifier=[judge:backend=[openai:{trap},model=x]]",
        f"best-of-n:n=1,verifier=[judge:backend=openai:{trap}]",
        f"best-of-n:verifier=[[judge:k=2,backend=[openai:{trap}]]]",
        f"best-of-n:verifier=[judge-select:backend=[openai:{trap},api_key=x]]",
        "best-of-n:verifier=[judge:backend=[embedded:/etc/passwd]]",
        "best-of-n:verifier=[judge:backend=scripted]",
        "best-of-n:n=2,verifier=[prm:model=ORG/REPO,trust_remote_code=true]",
        "best-of-n:verifier=[prm:trust_remote_code=true]",
        "best-of-n:verifier=[orm:model=/etc/passwd]",
        f"best-of-n:verifier=[reward-http:url={trap}]",
        f"best-of-n:verifier=[combo:parts=[1*[judge:backend=[openai:{trap}]]]]",
        "best-of-n:verifier=[tests:sandbox=process]",
        "best-of-n:verifier=tests",
        "adaptive:policy=/etc/passwd,budget=100",
        "adaptive:policy=/nonexistent/policy.json,budget=1",
        "budget-forcing:think_start=/etc/passwd",
        f"self-consistency:n=2,backend=openai:{trap}",
        f"self-consistency:n=2,url={trap}",
        f"openai:{trap}",
        "embedded:/etc/passwd",
        f"single:verifier=[judge:backend=[openai:{trap}]]",
    ]


def assert_refused(resp: httpx.Response, world: dict[str, Any]) -> None:
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.text)
    err = resp.json()["error"]
    assert err["message"] and err["code"] and err["type"]
    assert_clean(resp, world)


def assert_clean(resp: httpx.Response, world: dict[str, Any]) -> None:
    blob = resp.text + json.dumps(dict(resp.headers))
    assert SECRET not in blob
    assert UPSTREAM_BODY not in blob and "TRAP-BODY" not in blob


def chat(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "What is 1+1?"}], **extra}


def test_hostile_specs_are_refused_and_reach_nothing(world: dict[str, Any]) -> None:
    gw, trap = world["gw"], world["trap"]
    for spec in hostile_specs(trap.url):
        for body in (chat(spec), chat(f"{spec}@scripted"),
                     chat("scripted", testtime={"strategy": spec}),
                     {"model": "scripted", "prompt": "1+1?", "testtime": {"strategy": spec}}):
            path = "/v1/completions" if "prompt" in body else "/v1/chat/completions"
            resp = gw.http.post(path, json=body)
            assert_refused(resp, world)
            where = resp.json()["error"]["param"]
            assert where == ("testtime.strategy" if "testtime" in body else "model"), resp.text
    named = gw.http.post("/v1/chat/completions", json=chat(
        f"best-of-n:verifier=[judge:backend=[openai:{trap.url}]]"))
    assert "'backend'" in named.json()["error"]["message"]
    assert named.json()["error"]["code"] == "operator_only_option"
    policy = gw.http.post("/v1/chat/completions", json=chat("adaptive:policy=/etc/passwd"))
    assert "'policy'" in policy.json()["error"]["message"]
    for budget in ("tokens=inf", "tokens=nan", "seconds=nan", "tokens=1e400", "x=1", "tokens"):
        resp = gw.http.post("/v1/chat/completions", json=chat("scripted",
                                                               testtime={"budget": budget}))
        assert_refused(resp, world)
        assert resp.json()["error"]["param"] == "testtime.budget"
    assert trap.connections == 0
    assert gw.http.get("/health").json()["backend"] == "scripted"


def test_allowed_client_specs_still_work(world: dict[str, Any]) -> None:
    gw = world["gw"]
    for model in ("best-of-n:n=2,verifier=[judge:k=2,mode=sample]", "sc2",
                  "self-consistency:n=2,temperature=0.3@scripted",
                  "best-of-n:n=2,verifier=[confidence:mode=tail,window=4]"):
        resp = gw.http.post("/v1/chat/completions", json=chat(model))
        assert resp.status_code == 200, resp.text
        assert resp.json()["choices"][0]["testtime"]["answer"] == "2"
        assert_clean(resp, world)
    assert world["trap"].connections == 0


def test_strict_types_and_nonfinite_numbers(world: dict[str, Any]) -> None:
    gw = world["gw"]
    for field, value, code in (("n", "2", "invalid_type"), ("n", True, "invalid_type"),
                               ("stream", "yes", "invalid_type"), ("max_tokens", 2.5,
                                                                   "invalid_type"),
                               ("temperature", "0.5", "invalid_type"),
                               ("seed", "7", "invalid_type")):
        resp = gw.http.post("/v1/chat/completions", json=chat("scripted", **{field: value}))
        assert resp.status_code == 400, (field, value, resp.text)
        err = resp.json()["error"]
        assert (err["param"], err["code"], err["type"]) == (field, code,
                                                            "invalid_request_error")
    nested = gw.http.post("/v1/chat/completions",
                          json=chat("scripted", testtime={"details": "yes"}))
    assert nested.json()["error"]["param"] == "testtime.details"
    for raw, name in (("NaN", "NaN"), ("Infinity", "Infinity"), ("-Infinity", "-Infinity")):
        body = json.dumps(chat("scripted")).replace('"messages"', f'"temperature": {raw}, '
                                                    '"messages"')
        resp = gw.http.post("/v1/chat/completions", content=body,
                            headers={"content-type": "application/json"})
        assert resp.status_code == 400, resp.text
        err = resp.json()["error"]
        assert err["param"] == "temperature" and name in err["message"]
        assert err["code"] == "invalid_value"
    for resp in (gw.http.get("/v1/nowhere"), gw.http.delete("/v1/chat/completions"),
                 gw.http.post("/v1/chat/completions", content=b"{",
                              headers={"content-type": "application/json"})):
        assert 400 <= resp.status_code < 500 and resp.json()["error"]["code"]


def test_upstream_failure_keeps_body_url_and_key_home(world: dict[str, Any]) -> None:
    gw, upstream = world["gw"], world["upstream"]
    resp = gw.http.post("/v1/chat/completions", json=chat("judged"),
                        headers={"X-Request-ID": "hostile-502"})
    assert resp.status_code == 502, resp.text
    err = resp.json()["error"]
    assert err["code"] == "upstream_error" and "hostile-502" in err["message"]
    assert_clean(resp, world)
    assert str(upstream.port) not in resp.text and "127.0.0.1" not in resp.text
    assert upstream.connections >= 1
    assert any(f"Bearer {SECRET}".encode() in r for r in upstream.received)
    log = gw.log.read_text()
    assert UPSTREAM_BODY in log and "hostile-502" in log
    models = gw.http.get("/v1/models")
    assert models.status_code == 200 and str(upstream.port) not in models.text
    listed = {m["id"] for m in models.json()["data"]}
    assert "best-of-n@scripted" in listed and "adaptive@scripted" not in listed
    judged = next(m for m in models.json()["data"] if m["id"] == "judged")
    assert judged["testtime"]["strategy"] == "best-of-n:n=1,verifier=[judge:backend=***]"
    assert world["trap"].connections == 0


NAMES = {"strategy": testtime.strategies.strategies.names(),
         "verifier": testtime.verifiers.verifiers.names()}
HOSTILE_VALUES = st.sampled_from(["http://127.0.0.1:1/v1", "/etc/passwd", "ORG/REPO", "true",
                                  "[openai:http://127.0.0.1:1/v1]", "scripted", "../x.json",
                                  "nan", "inf", "-1", "1e309", "", "[", "]", "a,b", "0", "2"])


def option_values(kind: str, name: str) -> st.SearchStrategy[tuple[str, str]]:
    """A random option of a registered component with a random (often hostile) value."""
    reg = testtime.strategies.strategies if kind == "strategy" else \
        testtime.verifiers.verifiers
    fields = list(settings_class(reg, name).model_fields) or ["x"]
    return st.tuples(st.sampled_from([*fields, "backend", "url", "model"]),
                     HOSTILE_VALUES | st.integers(-3, 10**6).map(str)
                     | st.floats(allow_nan=True, allow_infinity=True).map(repr))


@st.composite
def random_spec(draw: st.DrawFn, kind: str = "strategy", depth: int = 0) -> str:
    """A spec built from the registry's names and fields: nested verifiers, hostile values."""
    names = st.sampled_from(NAMES[kind])
    if kind == "verifier":  # half the time one the server enables, to reach its options
        names = st.sampled_from(DEFAULT_VERIFIERS) | names
    name = draw(names)
    options = draw(st.lists(option_values(kind, name), max_size=3, unique_by=lambda o: o[0]))
    parts = [f"{k}={v}" for k, v in options]
    if kind == "strategy" and depth == 0 and draw(st.booleans()):
        parts.append(f"verifier=[{draw(random_spec('verifier', depth + 1))}]")
    return f"{name}:{','.join(parts)}" if parts else name


def operator_only_in(spec: str) -> bool:
    """Whether a drawn spec sets an option no client may set (checked from the registry)."""
    from testtime.registry import split_spec

    def walk(kind: str, text: str) -> bool:
        reg = testtime.strategies.strategies if kind == "strategy" else \
            testtime.verifiers.verifiers
        name, options = split_spec(text)
        fields = settings_class(reg, name).model_fields
        for key, value in options.items():
            if key not in fields:
                continue
            trust = field_trust(fields[key])
            if trust is CLIENT:
                continue
            if key != "verifier":
                return True
            if value and walk("verifier", value):
                return True
        return False

    return walk("strategy", spec)


def test_random_registry_specs_never_5xx_nor_connect(world: dict[str, Any]) -> None:
    gw, trap = world["gw"], world["trap"]

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(spec=random_spec(), where=st.sampled_from(["model", "at", "strategy"]))
    def one(spec: str, where: str) -> None:
        body = {"model": chat(spec), "at": chat(f"{spec}@scripted"),
                "strategy": chat("scripted", testtime={"strategy": spec})}[where]
        resp = gw.http.post("/v1/chat/completions", json=body)
        assert resp.status_code < 500, (spec, resp.text)
        assert_clean(resp, world)
        if resp.status_code != 200:
            assert resp.json()["error"]["code"]
        else:
            assert not operator_only_in(spec), spec

    one()
    assert trap.connections == 0


def test_client_mistakes_are_4xx_naming_the_param(serve: Any) -> None:
    from testtime.backends.scripted import ScriptedBackend

    aliases = {"ref": "best-of-n:n=2,verifier=reference", "code": "best-of-n:verifier=tests",
               "hidden": "best-of-n:n=2,verifier=[judge:backend=[scripted:text=Yes]]"}
    with serve(ScriptedBackend(), strategies=aliases, client_limits={
            "n": 3, "max_tokens": {"max": 64}, "judge.k": {"min": 2, "max": 4}},
            allowed_verifiers=["confidence", "judge", "reference"]) as gw, \
            httpx.Client(base_url=gw.url, timeout=60) as http:
        def post(model: str, **extra: Any) -> dict[str, Any]:
            resp = http.post("/v1/chat/completions", json=chat(model, **extra))
            assert 400 <= resp.status_code < 500, (model, resp.text)
            err: dict[str, Any] = resp.json()["error"]
            assert err["code"] and err["message"]
            return err

        assert post("ref")["param"] == "model"
        assert "reference answer" in post("best-of-n:verifier=reference")["message"]
        assert "code" in post("code")["message"]
        assert post("scripted", testtime={"strategy": "code"})["param"] == "testtime.strategy"
        err = post("self-consistency:n=4")
        assert (err["code"], err["param"]) == ("option_out_of_bounds", "model")
        assert "at most 3" in err["message"]
        err = post("best-of-n:n=2,verifier=[judge:k=1]")
        assert "between 2 and 4" in err["message"]
        err = post("self-consistency:n=2", max_tokens=65)
        assert (err["code"], err["param"]) == ("option_out_of_bounds", "max_tokens")
        err = post("self-consistency:n=2,bogus=1")
        assert "unknown option 'bogus'" in err["message"] and err["param"] == "model"
        err = post("best-of-n:verifier=[judge:backend=scripted]")
        assert (err["code"], err["param"]) == ("operator_only_option", "model")
        err = post("best-of-n:verifier=rpc")
        assert err["code"] == "verifier_not_allowed"
        ok = http.post("/v1/chat/completions", json=chat("hidden", max_tokens=64))
        assert ok.status_code == 200, ok.text
        assert ok.json()["choices"][0]["testtime"]["strategy"] == (
            "best-of-n:n=2,verifier=[judge:backend=***]")
        assert http.post("/v1/chat/completions", json=chat(
            "best-of-n:n=3,verifier=[judge:k=2,mode=sample]")).status_code == 200


LONE_SURROGATES = [
    ("/v1/chat/completions", r'{"model": "scripted", "messages": [{"role": "user", '
     r'"content": "a\ud800b"}]}', "messages.0.content"),
    ("/v1/chat/completions", r'{"model": "self-consistency:n=2@scripted", "stream": true, '
     r'"messages": [{"role": "user", "content": "\udfff"}]}', "messages.0.content"),
    ("/v1/chat/completions", r'{"model": "scripted", "messages": [{"role": "user", '
     r'"content": [{"type": "text", "text": "x\udc00"}]}]}', "messages.0.content.0.text"),
    ("/v1/chat/completions", r'{"model": "scripted", "stop": ["\ud800"], "messages": '
     r'[{"role": "user", "content": "hi"}]}', "stop.0"),
    ("/v1/chat/completions", r'{"model": "\ud800", "messages": []}', "model"),
    ("/v1/chat/completions", r'{"model": "scripted", "messages": [], "\ud800": 1}', "body"),
    ("/v1/completions", r'{"model": "scripted", "prompt": ["ok", "\ud83d"]}', "prompt.1"),
    ("/v1/responses", r'{"model": "scripted", "input": "\ud800"}', "input"),
    ("/v1/responses", r'{"model": "scripted", "stream": true, "input": [{"role": "user", '
     r'"content": [{"type": "input_text", "text": "x\udfff"}]}]}', "input.0.content.0.text"),
    ("/v1/responses", r'{"model": "scripted", "instructions": "\udc00", "input": "hi"}',
     "instructions"),
    ("/v1/responses", r'{"model": "scripted", "input": "hi", "metadata": {"\ud800": "x"}}',
     "metadata"),
]


def test_lone_surrogates_are_a_clean_400(serve: Any) -> None:
    from testtime.backends.scripted import ScriptedBackend

    with serve(ScriptedBackend()) as gw, httpx.Client(base_url=gw.url, timeout=30) as http:
        for path, body, param in LONE_SURROGATES:
            resp = http.post(path, content=body.encode(),
                             headers={"content-type": "application/json"})
            assert resp.status_code == 400, (body, resp.text)
            err = resp.json()["error"]
            assert (err["code"], err["param"]) == ("invalid_encoding", param), body
            assert "surrogate" in err["message"]
        pair = http.post("/v1/chat/completions", content=(
            br'{"model": "scripted", "messages": [{"role": "user", "content": "\ud83d\ude00 '
            br'\\ud800 is only text"}]}'), headers={"content-type": "application/json"})
        assert pair.status_code == 200, pair.text
