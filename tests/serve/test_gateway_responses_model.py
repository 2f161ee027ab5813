"""``POST /v1/responses`` over the embedded SmolLM2 engine with the official openai client:
plain, token-streamed and with a sampling strategy."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest
from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseIncompleteEvent,
    ResponseTextDeltaEvent,
)

pytestmark = pytest.mark.model

ASK = "What is 2+3? End with 'The answer is N.'"


def client(gw: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0, timeout=120)


def test_plain_and_streamed_responses_on_the_real_model(smollm_gateway: Any) -> None:
    c = client(smollm_gateway)
    raw = httpx.post(smollm_gateway.url + "/v1/responses", timeout=120, json={
        "model": "smollm2-135m", "input": ASK, "instructions": "You are a concise math tutor.",
        "max_output_tokens": 8})
    assert raw.status_code == 200, raw.text
    plain = Response.model_validate(raw.json())
    assert plain.output_text and plain.output[0].type == "message"
    usage = plain.usage
    assert usage is not None and 0 < usage.output_tokens <= 8 and usage.input_tokens > 10
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert usage.output_tokens_details.reasoning_tokens == 0
    assert plain.status == "completed" or usage.output_tokens == 8
    assert raw.json()["testtime"]["strategy"] == "single:max_tokens=24"

    events = list(c.responses.create(model="smollm2-135m", input=ASK, max_output_tokens=8,
                                     instructions="You are a concise math tutor.",
                                     stream=True))
    deltas = [e.delta for e in events if isinstance(e, ResponseTextDeltaEvent)]
    assert len(deltas) >= 3, deltas
    assert "".join(deltas) == plain.output_text
    last = events[-1]
    assert isinstance(last, ResponseCompletedEvent | ResponseIncompleteEvent)
    assert last.response.output_text == plain.output_text
    assert last.response.usage is not None
    assert last.response.usage.output_tokens == usage.output_tokens
    assert [e.sequence_number for e in events] == list(range(len(events)))


@pytest.mark.slow
def test_a_strategy_named_in_model_samples_on_the_real_model(smollm_gateway: Any) -> None:
    c = client(smollm_gateway)
    raw = c.responses.with_raw_response.create(
        model="self-consistency:n=3@smollm2-135m", input=ASK, max_output_tokens=8,
        extra_body={"testtime": {"details": True}})
    resp = raw.parse()
    body = raw.http_response.json()
    cands = body["testtime"]["candidates"]
    assert len(cands) == 3 and resp.output_text in [x["text"] for x in cands]
    usage = resp.usage
    assert usage is not None and body["usage"]["testtime"]["samples"] == 3
    assert usage.output_tokens == sum(x["generated_tokens"] for x in cands) + (
        body["usage"]["testtime"]["verifier_tokens"])
    chosen = next(x for x in cands if x["text"] == resp.output_text)
    assert usage.output_tokens_details.reasoning_tokens == (
        usage.output_tokens - chosen["generated_tokens"]) > 0
    streamed = list(c.responses.create(model="self-consistency:n=2@smollm2-135m", input=ASK,
                                       max_output_tokens=8, stream=True))
    final = streamed[-1]
    assert isinstance(final, ResponseCompletedEvent | ResponseIncompleteEvent)
    assert final.response.output_text
    assert [e.delta for e in streamed if isinstance(e, ResponseTextDeltaEvent)] == [
        final.response.output_text]
