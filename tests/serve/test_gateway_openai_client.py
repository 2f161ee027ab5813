"""A real gateway over the embedded SmolLM2 engine, driven by the official openai client."""

from __future__ import annotations

from typing import Any

import openai
import pytest

pytestmark = pytest.mark.model

ASK = [{"role": "system", "content": "You are a concise math tutor."},
       {"role": "user", "content": "What is 2+3? End with 'The answer is N.'"}]


def client(gw: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0, timeout=120)


def test_plain_chat_and_models(smollm_gateway: Any) -> None:
    c = client(smollm_gateway)
    assert "smollm2-135m" in {m.id for m in c.models.list()}
    reply = c.chat.completions.create(model="smollm2-135m", messages=ASK, max_tokens=8)  # type: ignore[arg-type]
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert reply.usage is not None and 0 < reply.usage.completion_tokens <= 8
    assert reply.usage.prompt_tokens > 10
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    assert (choice.model_extra or {})["testtime"]["strategy"] == "single:max_tokens=24"


def test_streamed_single_streams_tokens(smollm_gateway: Any) -> None:
    c = client(smollm_gateway)
    stream = c.chat.completions.create(model="smollm2-135m", messages=ASK, max_tokens=8,  # type: ignore[arg-type]
                                       stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    pieces = [ch.choices[0].delta.content for ch in chunks
              if ch.choices and ch.choices[0].delta.content]
    assert len(pieces) >= 3, pieces
    finals = [ch.choices[0].finish_reason for ch in chunks if ch.choices]
    assert finals[-1] in ("stop", "length") and all(f is None for f in finals[:-1])
    usage = chunks[-1].usage
    assert usage is not None and len(pieces) <= usage.completion_tokens <= 8
    plain = c.chat.completions.create(model="smollm2-135m", messages=ASK, max_tokens=8)  # type: ignore[arg-type]
    assert plain.choices[0].message.content == "".join(pieces)


def test_strategy_by_model_name_usage_is_sum_over_samples(smollm_gateway: Any) -> None:
    c = client(smollm_gateway)
    reply = c.chat.completions.create(
        model="self-consistency:n=3@smollm2-135m", messages=ASK, max_tokens=8,  # type: ignore[arg-type]
        extra_body={"testtime": {"details": True}})
    details = (reply.choices[0].model_extra or {})["testtime"]
    assert details["strategy"] == "self-consistency:n=3"
    cands = details["candidates"]
    assert len(cands) == 3
    assert reply.usage is not None
    extra = reply.usage.model_extra or {}
    generated = extra["testtime"]["generated_tokens"]
    assert generated == sum(x["generated_tokens"] for x in cands)
    assert generated > max(x["generated_tokens"] for x in cands)
    assert reply.usage.completion_tokens == generated + extra["testtime"]["verifier_tokens"]
    assert extra["testtime"]["verifier_calls"] == (
        1 if details["aggregation"] in ("usc", "usc-overlap") else 0)
    assert extra["testtime"]["samples"] == 3
    assert reply.choices[0].message.content in [x["text"] for x in cands]
    if details["answer"] is not None:
        assert sum(details["votes"].values()) <= 3


def test_strategy_by_extra_body_on_completions_and_streamed(smollm_gateway: Any) -> None:
    c = client(smollm_gateway)
    reply = c.completions.create(
        model="smollm2-135m", prompt="Name a colour.", max_tokens=8,
        extra_body={"testtime": {"strategy": "best-of-n:n=2", "details": True}})
    details = (reply.choices[0].model_extra or {})["testtime"]
    assert details["strategy"] == "best-of-n:n=2"
    assert len(details["candidates"]) == 2
    assert all(x["score"] is not None for x in details["candidates"])
    assert reply.choices[0].text  # non-math text still gets a reply
    assert reply.usage is not None
    assert reply.usage.completion_tokens == sum(
        x["generated_tokens"] for x in details["candidates"]) + (
        reply.usage.model_extra or {})["testtime"]["verifier_tokens"]
    stream = c.chat.completions.create(
        model="smollm2-135m", messages=ASK, max_tokens=8, stream=True,  # type: ignore[arg-type]
        stream_options={"include_usage": True},
        extra_body={"testtime": {"strategy": "self-consistency:n=2"}})
    chunks = list(stream)
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.model_extra or {})["testtime"]["samples"] == 2


def test_client_specs_on_the_real_model_stay_within_the_operators_choices(
        smollm_gateway: Any) -> None:
    c = client(smollm_gateway)
    reply = c.chat.completions.create(
        model="best-of-n:n=2,verifier=[judge:k=2,mode=sample]@smollm2-135m", messages=ASK,  # type: ignore[arg-type]
        max_tokens=8, extra_body={"testtime": {"details": True}})
    details = (reply.choices[0].model_extra or {})["testtime"]
    assert details["strategy"] == "best-of-n:n=2,verifier=[judge:k=2,mode=sample]"
    assert all(x["score"] is not None for x in details["candidates"])
    assert reply.usage is not None
    assert (reply.usage.model_extra or {})["testtime"]["verifier_tokens"] > 0
    for model, code in (
            ("best-of-n:n=2,verifier=[judge:backend=[embedded:smollm2-135m]]",
             "operator_only_option"),
            ("best-of-n:verifier=[prm:model=ORG/REPO,trust_remote_code=true]",
             "verifier_not_allowed"),
            ("adaptive:policy=/etc/passwd,budget=100", "operator_only_option")):
        with pytest.raises(openai.BadRequestError) as refused:
            c.chat.completions.create(model=model, messages=ASK, max_tokens=8)  # type: ignore[arg-type]
        assert refused.value.code == code
        assert (refused.value.body or {}).get("param") == "model"  # type: ignore[union-attr]
