"""Hypothesis sends malformed and odd requests to a live gateway: never a 5xx, never a crash."""

from __future__ import annotations

import json
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from testtime.backends.scripted import ScriptedBackend

SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
TEXT = st.text(max_size=30) | st.lists(SURROGATES | st.characters(), min_size=1,
                                      max_size=8).map("".join)
SCALARS = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | TEXT
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=12)
ROLES = st.sampled_from(["system", "user", "assistant", "developer", "tool", "robot", ""])
MODELS = st.sampled_from(["scripted", "single@scripted", "self-consistency:n=2@scripted",
                          "best-of-n:n=2", "self-consistency:n=0", "beam:width=x", "@", ":",
                          "single@", "nope", "self-consistency:n=[2", ""]) | TEXT
MESSAGE = st.fixed_dictionaries({"role": ROLES}, optional={
    "content": st.text(max_size=40) | TEXT | JSON | st.lists(st.fixed_dictionaries(
        {"type": st.sampled_from(["text", "image_url", "x"])},
        optional={"text": st.text(max_size=20) | JSON}), max_size=3),
    "name": JSON})
FIELDS = {"n": JSON | st.integers(0, 6), "max_tokens": JSON | st.integers(-1, 20),
          "temperature": JSON | st.floats(-1, 3), "stream": JSON | st.booleans(),
          "stream_options": JSON | st.fixed_dictionaries({"include_usage": JSON}),
          "seed": JSON | st.integers(-5, 2**64),
          "testtime": JSON | st.fixed_dictionaries({}, optional={
              "strategy": MODELS, "details": JSON, "budget": st.text(max_size=30) | JSON,
              "seed": JSON})}
CHAT = st.fixed_dictionaries({"model": MODELS | JSON},
                             optional={"messages": st.lists(MESSAGE, max_size=4) | JSON,
                                       **FIELDS})
COMPLETION = st.fixed_dictionaries({"model": MODELS | JSON},
                                   optional={"prompt": st.text(max_size=40)
                                             | st.lists(st.text(max_size=10), max_size=6)
                                             | JSON, **FIELDS})
PART = st.fixed_dictionaries({"type": st.sampled_from(["input_text", "output_text", "refusal",
                                                     "input_image", "x"])},
                             optional={"text": TEXT | JSON, "refusal": TEXT | JSON})
ITEM = st.fixed_dictionaries({}, optional={
    "type": st.sampled_from(["message", "function_call", "function_call_output", "reasoning",
                             "item_reference", "web_search_call"]) | JSON,
    "role": ROLES | JSON, "content": TEXT | st.lists(PART, max_size=3) | JSON,
    "call_id": TEXT | JSON, "name": st.sampled_from(["get_weather", ""]) | JSON,
    "arguments": st.sampled_from(['{"city": "Paris"}', "{", ""]) | JSON,
    "output": TEXT | st.lists(PART, max_size=2) | JSON})
TOOL = st.fixed_dictionaries({"type": st.sampled_from(["function", "web_search"]) | JSON},
                             optional={"name": st.sampled_from(["get_weather", "bad name"])
                                       | JSON, "parameters": JSON})
RESPONSES = st.fixed_dictionaries({"model": MODELS | JSON}, optional={
    "input": TEXT | st.lists(ITEM, max_size=4) | JSON, "instructions": TEXT | JSON,
    "max_output_tokens": JSON | st.integers(-1, 20), "temperature": FIELDS["temperature"],
    "stream": FIELDS["stream"], "tools": st.lists(TOOL, max_size=2) | JSON,
    "tool_choice": st.sampled_from(["auto", "required", "none"]) | JSON,
    "reasoning": JSON | st.fixed_dictionaries({}, optional={"effort": TEXT | JSON}),
    "text": JSON | st.fixed_dictionaries({"format": JSON}), "metadata": JSON,
    "previous_response_id": JSON, "include": JSON, "testtime": FIELDS["testtime"]})
RAW = st.binary(max_size=200) | st.text(max_size=200).map(str.encode) | TEXT.map(
    lambda t: json.dumps({"model": "scripted", "messages": [{"role": "user", "content": t}]}
                         ).encode())


def check(resp: httpx.Response) -> None:
    assert resp.status_code < 500, (resp.status_code, resp.text)
    if resp.status_code >= 400:
        assert resp.json()["error"]["message"]


def test_fuzzed_requests_never_5xx(serve: Any) -> None:
    backend = ScriptedBackend(max_n=1_000_000)
    with serve(backend, max_choices=4, request_budget="tokens=256") as gw, \
            httpx.Client(base_url=gw.url, timeout=30) as http:

        @settings(max_examples=360, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        @given(path=st.sampled_from(["/v1/chat/completions", "/v1/completions",
                                     "/v1/responses"]),
               chat=CHAT, completion=COMPLETION, responses=RESPONSES, raw=RAW,
               mode=st.integers(0, 2))
        def one(path: str, chat: Any, completion: Any, responses: Any, raw: bytes,
                mode: int) -> None:
            if mode == 2:
                resp = http.post(path, content=raw, headers={"content-type": "application/json"})
            else:
                bodies = {"/v1/chat/completions": chat, "/v1/completions": completion,
                          "/v1/responses": responses}
                body = bodies[path]
                if mode == 1:
                    body = chat if body is not chat else responses
                try:
                    payload = json.dumps(body).encode()
                except ValueError:
                    return
                resp = http.post(path, content=payload,
                                 headers={"content-type": "application/json"})
            check(resp)

        one()
        assert http.get("/health").json()["status"] == "ok"
        ok = http.post("/v1/chat/completions", json={
            "model": "scripted", "messages": [{"role": "user", "content": "hi"}]})
        assert ok.status_code == 200
        assert http.post("/v1/responses", json={"model": "scripted",
                                                "input": "hi"}).status_code == 200
