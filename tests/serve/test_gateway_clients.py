"""Real third-party clients (openai SDK, LangChain, LiteLLM) against a real gateway on the
embedded models: conversations, tool calls, streaming, free-text aggregation."""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from typing import Any

import openai
import pytest

from testtime.backends.base import Backend

pytestmark = pytest.mark.model
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no cost-map download

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}
ASK_WEATHER = [{"role": "user", "content": "What's the weather in Paris right now?"}]


def client(gw: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0, timeout=300)


def test_multi_turn_answer_depends_on_an_earlier_assistant_turn(smollm_gateway: Any) -> None:
    c = client(smollm_gateway)
    question = {"role": "user", "content": "What was the password you gave me?"}
    chat = [{"role": "user", "content": "Give me a secret password."},
            {"role": "assistant", "content": "Your secret password is PINEAPPLE42."}, question]
    reply = c.chat.completions.create(model="smollm2-135m", messages=chat,  # type: ignore[arg-type]
                                      max_tokens=12)
    assert "PINEAPPLE42" in (reply.choices[0].message.content or "")
    alone = c.chat.completions.create(model="smollm2-135m", messages=[question],  # type: ignore[list-item]
                                      max_tokens=12)
    assert "PINEAPPLE42" not in (alone.choices[0].message.content or "")
    assert reply.usage is not None and alone.usage is not None
    assert reply.usage.prompt_tokens > alone.usage.prompt_tokens + 8


def test_openai_sdk_tool_call_and_the_next_agent_step(smollm_gateway: Any) -> None:
    c = client(smollm_gateway)
    first = c.chat.completions.create(model="smollm2-135m", messages=ASK_WEATHER,  # type: ignore[arg-type]
                                      tools=[WEATHER], tool_choice="required",  # type: ignore[list-item]
                                      max_tokens=40)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert isinstance(json.loads(call.function.arguments)["city"], str)  # type: ignore[union-attr]
    chat = [*ASK_WEATHER, choice.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "18 C and sunny"}]
    second = c.chat.completions.create(model="smollm2-135m", messages=chat,  # type: ignore[arg-type]
                                       tools=[WEATHER], max_tokens=16)  # type: ignore[list-item]
    assert second.choices[0].finish_reason in ("stop", "length")
    assert second.choices[0].message.content
    assert second.usage is not None and first.usage is not None
    assert second.usage.prompt_tokens > first.usage.prompt_tokens


def test_openai_async_client_streams_self_consistency(smollm_gateway: Any) -> None:
    async def run() -> list[Any]:
        c = openai.AsyncOpenAI(base_url=smollm_gateway.url + "/v1", api_key="x",
                               max_retries=0, timeout=300)
        stream = await c.chat.completions.create(
            model="self-consistency:n=2@smollm2-135m", max_tokens=12, stream=True,
            messages=[{"role": "user", "content": "What is 2+3? End with 'The answer is N.'"}],
            stream_options={"include_usage": True})
        return [chunk async for chunk in stream]

    chunks = asyncio.run(run())
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] in ("stop",
                                                                                 "length")
    usage = chunks[-1].usage
    assert usage is not None
    spent = (usage.model_extra or {})["testtime"]
    assert 0 < spent["generated_tokens"] <= 24
    assert usage.completion_tokens == spent["generated_tokens"] + spent["verifier_tokens"]


def test_open_ended_self_consistency_uses_free_text_aggregation(smollm_gateway: Any) -> None:
    reply = client(smollm_gateway).chat.completions.create(
        model="self-consistency:n=4@smollm2-135m", max_tokens=24, messages=[  # type: ignore[arg-type]
            {"role": "user",
             "content": "Write a one-sentence product description for a steel water bottle."}],
        extra_body={"testtime": {"details": True}})
    details = (reply.choices[0].model_extra or {})["testtime"]
    texts = [c["text"] for c in details["candidates"]]
    assert len(texts) == 4
    assert details["aggregation"] in ("usc", "usc-overlap", "unanimous")
    assert details["answer"] is None and details["votes"] == {}
    assert reply.choices[0].message.content in texts
    assert reply.usage is not None
    usage = (reply.usage.model_extra or {})["testtime"]
    assert usage["verifier_calls"] == (0 if details["aggregation"] == "unanimous" else 1)
    assert usage["verifier_tokens"] > 0 or details["aggregation"] == "unanimous"


def test_langchain_chat_model_with_a_bound_tool(smollm_gateway: Any) -> None:
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI
    from pydantic import BaseModel

    @tool
    def get_weather(city: str) -> str:
        """Get the current weather in a city."""
        return f"18 C in {city}"

    llm = ChatOpenAI(model="smollm2-135m", base_url=smollm_gateway.url + "/v1",
                     api_key="unused", max_tokens=40, temperature=0, max_retries=0)  # type: ignore[arg-type]
    message = llm.bind_tools([get_weather], tool_choice="any").invoke(
        "What's the weather in Paris right now?")
    assert message.tool_calls and message.tool_calls[0]["name"] == "get_weather"  # type: ignore[attr-defined]
    assert isinstance(message.tool_calls[0]["args"]["city"], str)  # type: ignore[attr-defined]

    class Place(BaseModel):
        """A city and its country."""

        city: str
        country: str

    roomy = ChatOpenAI(model="smollm2-135m", base_url=smollm_gateway.url + "/v1",
                       api_key="unused", max_tokens=96, temperature=0, max_retries=0)  # type: ignore[arg-type]
    place = roomy.with_structured_output(Place, method="function_calling").invoke(
        "Paris is the capital of France. Extract the place.")
    assert isinstance(place, Place)
    plain = llm.invoke("Say hello.")
    assert isinstance(plain.content, str) and plain.content


def test_litellm_openai_compatible_provider(smollm_gateway: Any) -> None:
    import litellm

    base = dict(model="openai/smollm2-135m", api_base=smollm_gateway.url + "/v1",
                api_key="unused", max_tokens=40, num_retries=0)
    text = litellm.completion(messages=[{"role": "user", "content": "Say hello."}], **base)
    assert text.choices[0].message.content  # type: ignore[union-attr]
    called = litellm.completion(messages=ASK_WEATHER, tools=[WEATHER],
                                tool_choice="required", **base)
    calls = called.choices[0].message.tool_calls  # type: ignore[union-attr]
    assert calls and calls[0].function.name == "get_weather"
    assert isinstance(json.loads(calls[0].function.arguments)["city"], str)


@pytest.mark.slow
@pytest.mark.ci
def test_tool_call_voting_on_qwen(qwen05: Backend, serve: Any) -> None:
    """self-consistency:n=5 on a tool-calling model answers with the majority call."""
    with serve(qwen05, max_choices=1, request_timeout=600) as gw:
        reply = client(gw).chat.completions.create(
            model="self-consistency:n=5@qwen2.5-coder-0.5b", messages=ASK_WEATHER,  # type: ignore[arg-type]
            tools=[WEATHER], max_tokens=40, seed=3,  # type: ignore[list-item]
            extra_body={"testtime": {"details": True}})
    choice = reply.choices[0]
    details = (choice.model_extra or {})["testtime"]
    answers = Counter(c["answer"] for c in details["candidates"]
                      if c["answer"] and c["answer"].startswith("tool:"))
    assert answers, details["candidates"]
    top, count = answers.most_common(1)[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
    assert details["answer"] == top and details["votes"][top] == count
    assert all(count >= n for n in answers.values())
    call = choice.message.tool_calls[0]
    expected = json.loads(top.removeprefix("tool:"))[0]
    assert call.function.name == expected["name"] == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == expected["arguments"]  # type: ignore[union-attr]
