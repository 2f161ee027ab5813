"""The gateway over a scripted backend: routing, accounting, errors, limits, timeouts."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai
import pytest

from testtime.backends.scripted import ScriptedBackend
from testtime.types import Prompt

ASK = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 1+1?"}]


def chat(model: str = "scripted", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": ASK, **extra}


def assert_openai_error(resp: httpx.Response, status: int, code: str | None = None) -> None:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert err["message"] and err["type"]
    if code is not None:
        assert err["code"] == code


def test_strategy_routing_and_usage_sum(serve: Any) -> None:
    backend = ScriptedBackend.cycle(["The answer is 1.", "So the answer is 2.", "The answer is 2."])
    with serve(backend, strategies={"sc3": "self-consistency:n=3"},
               allowed_strategies=["single", "self-consistency"]) as gw:
        by_name = gw.post("/v1/chat/completions", chat("self-consistency:n=3@scripted",
                                                       testtime={"details": True})).json()
        choice = by_name["choices"][0]
        assert choice["testtime"]["strategy"] == "self-consistency:n=3"
        assert choice["testtime"]["answer"] == "2"
        assert choice["message"]["content"].endswith("answer is 2.")
        cands = choice["testtime"]["candidates"]
        assert len(cands) == 3
        usage = by_name["usage"]
        assert usage["completion_tokens"] == sum(c["generated_tokens"] for c in cands) == 13
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
        assert usage["testtime"]["samples"] == 3 and usage["testtime"]["calls"] == 1
        assert backend.requests[-1].n == 3
        assert backend.requests[-1].prompt.messages[0].content == "Be brief."

        alias = gw.post("/v1/chat/completions", chat("sc3")).json()
        assert alias["choices"][0]["testtime"]["strategy"] == "self-consistency:n=3"
        assert "candidates" not in alias["choices"][0]["testtime"]

        body = chat(testtime={"strategy": "self-consistency:n=2"})
        extra = gw.post("/v1/chat/completions", body).json()
        assert extra["choices"][0]["testtime"]["strategy"] == "self-consistency:n=2"
        assert backend.requests[-1].n == 2

        default = gw.post("/v1/chat/completions", chat(max_tokens=3, temperature=0.5)).json()
        assert default["choices"][0]["testtime"]["strategy"] == "single"
        assert default["choices"][0]["finish_reason"] == "length"
        assert backend.requests[-1].max_tokens == 3 and backend.requests[-1].temperature == 0.5

        two = gw.post("/v1/chat/completions", chat("sc3", n=2)).json()
        assert [c["index"] for c in two["choices"]] == [0, 1]
        assert two["usage"]["testtime"]["samples"] == 6

        refused = gw.post("/v1/chat/completions", chat("best-of-n:n=2@scripted"))
        assert_openai_error(refused, 400, "invalid_strategy")
        assert "not enabled" in refused.json()["error"]["message"]


def test_errors_are_openai_format(serve: Any) -> None:
    with serve(ScriptedBackend(), max_body_bytes=4096, max_choices=2) as gw:
        post = gw.post
        assert_openai_error(post("/v1/chat/completions", chat("nope")), 404, "model_not_found")
        assert_openai_error(post("/v1/chat/completions", chat("single@other")), 404,
                            "model_not_found")
        assert_openai_error(httpx.get(gw.url + "/v1/nothing"), 404)
        assert_openai_error(httpx.get(gw.url + "/v1/chat/completions"), 405)
        assert_openai_error(post("/v1/chat/completions", {"model": "scripted", "messages": []}),
                            400, "invalid_request")
        assert_openai_error(post("/v1/chat/completions", chat(temperature=9)), 400)
        assert_openai_error(post("/v1/chat/completions", chat(n=3)), 400)
        assert_openai_error(post("/v1/chat/completions",
                                 chat(testtime={"strategy": "self-consistency:n=zero"})),
                            400, "invalid_strategy")
        assert_openai_error(post("/v1/chat/completions", chat(testtime={"budget": "x=1"})), 400)
        image = [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]
        assert_openai_error(post("/v1/chat/completions", {"model": "scripted",
                                                          "messages": image}), 400)
        only_system = [{"role": "system", "content": "hi"}]
        assert_openai_error(post("/v1/chat/completions", {"model": "scripted",
                                                          "messages": only_system}), 400)
        bad_json = httpx.post(gw.url + "/v1/chat/completions", content=b"{not json",
                              headers={"content-type": "application/json"})
        assert_openai_error(bad_json, 400)
        huge = chat(messages=[{"role": "user", "content": "x" * 10_000}])
        assert_openai_error(post("/v1/chat/completions", huge), 413, "request_too_large")
        assert post("/v1/chat/completions", chat()).status_code == 200


def test_api_keys_and_budget_caps(serve: Any) -> None:
    keys = {"k-small": {"budget_tokens": 100, "name": "small"}, "k-big": {}}
    with serve(ScriptedBackend(), api_keys=keys) as gw:
        assert_openai_error(gw.post("/v1/chat/completions", chat()), 401, "invalid_api_key")
        assert_openai_error(httpx.get(gw.url + "/v1/models"), 401)
        wrong = {"Authorization": "Bearer nope"}
        assert_openai_error(gw.post("/v1/chat/completions", chat(), headers=wrong), 401)
        client = openai.OpenAI(base_url=gw.url + "/v1", api_key="k-small", max_retries=0)
        spent = 0
        with pytest.raises(openai.RateLimitError) as refused:
            for _ in range(30):
                reply = client.chat.completions.create(model="scripted", messages=ASK)
                assert reply.usage is not None and reply.usage.total_tokens > 0
                spent += reply.usage.total_tokens
        assert refused.value.code == "insufficient_quota"
        assert 0 < spent <= 100  # the key's cap holds: each call was planned with its prompt
        assert gw.app.state.gateway.guard.spent()["small"] == spent
        big = openai.OpenAI(base_url=gw.url + "/v1", api_key="k-big", max_retries=0)
        assert big.chat.completions.create(model="scripted", messages=ASK).choices
        assert {m.id for m in big.models.list()} >= {"scripted", "single@scripted"}
        with pytest.raises(openai.NotFoundError):
            big.chat.completions.create(model="missing", messages=ASK)


def test_backpressure_then_recovery(serve: Any) -> None:
    backend = ScriptedBackend(delay=0.25)  # 4 words → 1 s per request
    with serve(backend, max_concurrency=1, max_queue=1, queue_timeout=0.4) as gw:
        with ThreadPoolExecutor(3) as pool:
            replies = list(pool.map(lambda _: gw.post("/v1/chat/completions", chat()), range(3)))
        codes = sorted(r.status_code for r in replies)
        assert codes == [200, 429, 429], codes
        for r in replies:
            if r.status_code == 429:
                assert r.headers["retry-after"] == "1"
                assert r.json()["error"]["code"] == "server_busy"
        assert gw.post("/v1/chat/completions", chat()).status_code == 200
        metrics = httpx.get(gw.url + "/metrics").text
        assert 'testtime_gateway_requests_total{endpoint="/v1/chat/completions",status="429"} 2' \
            in metrics
        assert "testtime_gateway_requests_refused 2" in metrics


def test_timeout_gives_504_and_cancels_work(serve: Any) -> None:
    def delay(prompt: str) -> float:
        return 1.0 if "slow" in prompt else 0.0

    backend = ScriptedBackend(delay=delay)
    with serve(backend, request_timeout=0.5) as gw:
        slow = gw.post("/v1/chat/completions",
                       chat(messages=[{"role": "user", "content": "slow please"}]))
        assert_openai_error(slow, 504, "timeout")
        assert backend.cancelled == 1
        assert gw.post("/v1/chat/completions", chat()).status_code == 200
        assert 'kind="timeout"' in httpx.get(gw.url + "/metrics").text


def test_completions_streaming_and_request_ids(serve: Any) -> None:
    def answer(prompt: Prompt, i: int, req: Any) -> str:
        return f"Reply to {prompt.messages[-1].content}: the answer is {i}."

    with serve(ScriptedBackend(responder=answer), max_choices=4) as gw:
        resp = gw.post("/v1/completions", {"model": "scripted", "prompt": ["a", "b"]},
                       headers={"X-Request-ID": "my-req-1"})
        assert resp.headers["x-request-id"] == "my-req-1"
        texts = [c["text"] for c in resp.json()["choices"]]
        assert texts == ["Reply to a: the answer is 0.", "Reply to b: the answer is 0."]
        with httpx.stream("POST", gw.url + "/v1/chat/completions", timeout=30, json=chat(
                "self-consistency:n=3@scripted", stream=True,
                stream_options={"include_usage": True})) as streamed:
            assert streamed.headers["content-type"].startswith("text/event-stream")
            events = [line[6:] for line in streamed.iter_lines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        chunks = [json.loads(e) for e in events[:-1]]
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks
                       if c["choices"])
        assert text.startswith("Reply to What is 1+1?")
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["testtime"]["samples"] == 3
        assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


def test_client_that_leaves_stops_the_work(serve: Any) -> None:
    backend = ScriptedBackend(delay=1.0)  # 4 words → 4 s
    with serve(backend) as gw:
        with pytest.raises(httpx.ReadTimeout):
            gw.post("/v1/chat/completions", chat(), timeout=0.5)
        deadline = time.monotonic() + 5
        while backend.cancelled == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert backend.cancelled == 1
        assert gw.post("/v1/chat/completions", chat(max_tokens=1)).status_code == 200
