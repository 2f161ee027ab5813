"""Conversations, tools, tool-call voting, free-text aggregation, reasoning and request fields
through the gateway, on the scripted engine (strategy logic; the real-model checks are in
test_gateway_clients.py)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import httpx
import openai
import pytest

from testtime.backends.embedded import chat_request
from testtime.backends.scripted import ScriptedBackend, render
from testtime.chat import canonical_calls, forced_call_format, parse_tool_calls, split_reasoning
from testtime.types import (
    ChatOptions,
    Generation,
    GenerationRequest,
    Message,
    Prompt,
    ToolCall,
)

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}
ASK = [{"role": "user", "content": "What's the weather in Paris?"}]
PARIS = '{"name": "get_weather", "arguments": {"city": "Paris"}}'
PARIS_REORDERED = ('<tool_call>\n{"arguments": {"city":"Paris"}, "name": "get_weather"}'
                   '\n</tool_call>')
LYON = '{"name": "get_weather", "arguments": {"city": "Lyon"}}'
USC_PICK = "The most consistent response is Response 2"


def client(gw: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0, timeout=60)


def cycling(texts: list[str], usc: str = USC_PICK) -> ScriptedBackend:
    """Answers ``texts`` in turn; answers a universal self-consistency prompt with ``usc``."""
    counter = iter(range(10**6))

    def respond(prompt: Prompt, i: int, req: GenerationRequest) -> str:
        if "most consistent response" in prompt.messages[-1].content:
            return usc
        return texts[next(counter) % len(texts)]

    return ScriptedBackend(responder=respond)


# --- pieces ---------------------------------------------------------------------------------

def test_tool_calls_are_read_from_text_and_canonicalised() -> None:
    options = ChatOptions(tools=(WEATHER,))
    a = parse_tool_calls(PARIS, options)
    b = parse_tool_calls(PARIS_REORDERED, options)
    assert [c.name for c in a] == ["get_weather"]
    assert canonical_calls(a) == canonical_calls(b) != canonical_calls(parse_tool_calls(LYON,
                                                                                      options))
    assert parse_tool_calls('{"name": "rm_rf", "arguments": {}}', options) == ()
    assert parse_tool_calls(PARIS, ChatOptions(tools=(WEATHER,), tool_choice="none")) == ()
    assert parse_tool_calls("The weather is {nice}.", options) == ()


def test_forced_call_format_constrains_to_declared_tools() -> None:
    assert forced_call_format(ChatOptions(tools=(WEATHER,), tool_choice="auto")) is None
    fmt = forced_call_format(ChatOptions(tools=(WEATHER,), tool_choice="required"))
    assert fmt is not None
    schema = fmt["json_schema"]["schema"]
    assert schema["properties"]["name"]["enum"] == ["get_weather"]
    assert schema["properties"]["arguments"] == WEATHER["function"]["parameters"]  # type: ignore[index]


def test_split_reasoning() -> None:
    assert split_reasoning("<think>\nadd them\n</think>\n\nThe answer is 4.") == (
        "add them", "The answer is 4.")
    assert split_reasoning("no thinking here") == (None, "no thinking here")


def test_chat_body_keeps_every_turn_tools_and_prefill_last() -> None:
    prompt = Prompt(messages=(
        Message(role="system", content="Be brief."),
        Message(role="user", content="Weather in Paris?"),
        Message(role="assistant", tool_calls=(ToolCall(id="c1", name="get_weather",
                                                       arguments='{"city":"Paris"}'),)),
        Message(role="tool", content="18 C", tool_call_id="c1"),
        Message(role="user", content="And tomorrow?"),
    ), prefix="Tomorrow", options=ChatOptions(
        tools=(WEATHER,), response_format={"type": "json_object"}))
    body = chat_request(prompt, GenerationRequest(prompt=prompt), 2)
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "user", "assistant"]
    assert body["messages"][2]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert body["messages"][3]["tool_call_id"] == "c1"
    assert body["messages"][-1] == {"role": "assistant", "content": "Tomorrow"}
    assert body["tools"] == [WEATHER] and body["response_format"] == {"type": "json_object"}


# --- conversations --------------------------------------------------------------------------

def test_whole_conversation_reaches_the_engine(serve: Any) -> None:
    engine = ScriptedBackend(responder=lambda p, i, r: "It will rain.")
    chat = [{"role": "system", "content": "Be brief."},
            {"role": "developer", "content": "Use metric units."},
            {"role": "user", "content": "What's the weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function",
                 "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "18 C, sunny"},
            {"role": "assistant", "content": "18 C and sunny."},
            {"role": "user", "content": "And tomorrow?"}]
    with serve(engine) as gw:
        r = gw.post("/v1/chat/completions", {"model": "scripted", "messages": chat,
                                             "tools": [WEATHER]})
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == "It will rain."
        prompt = engine.requests[-1].prompt
        assert [m.role for m in prompt.messages] == [
            "system", "user", "assistant", "tool", "assistant", "user"]
        assert prompt.messages[0].content == "Be brief.\n\nUse metric units."
        assert prompt.messages[2].tool_calls[0].arguments == '{"city":"Paris"}'
        assert prompt.messages[3].tool_call_id == "c1"
        assert prompt.options.tools[0]["function"]["name"] == "get_weather"
        assert "Conversation so far" not in render(prompt)
        assert r.json()["usage"]["prompt_tokens"] == len(render(prompt).split())


def test_conversation_survives_a_continuing_strategy(serve: Any) -> None:
    """budget-forcing extends a partial assistant reply on top of the whole conversation."""
    engine = ScriptedBackend(responder=lambda p, i, r: "two plus two is four 4")
    chat = [{"role": "user", "content": "Remember 2."},
            {"role": "assistant", "content": "Remembered: 2."},
            {"role": "user", "content": "Add 2 to it."}]
    with serve(engine) as gw:
        r = gw.post("/v1/chat/completions", {
            "model": "budget-forcing:style=tags,max_think=8,answer_tokens=4@scripted",
            "messages": chat})
        assert r.status_code == 200, r.text
        message = r.json()["choices"][0]["message"]
        assert message["reasoning_content"] and message["reasoning"] == message[
            "reasoning_content"]
        assert message["content"].startswith("The answer is")
        assert "</think>" not in message["content"]
        for req in engine.requests:
            assert [m.role for m in req.prompt.messages] == ["user", "assistant", "user"]
            assert req.prompt.prefix.startswith("<think>")


# --- tools and tool-call voting ---------------------------------------------------------------

def test_self_consistency_votes_on_canonical_tool_calls(serve: Any) -> None:
    engine = cycling([PARIS, LYON, PARIS_REORDERED, "It is sunny, I think.", PARIS])
    with serve(engine, max_choices=4) as gw:
        reply = client(gw).chat.completions.create(
            model="self-consistency:n=5@scripted", messages=ASK,  # type: ignore[arg-type]
            tools=[WEATHER],  # type: ignore[list-item]
            extra_body={"testtime": {"details": True}})
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls
    assert calls is not None and len(calls) == 1
    assert calls[0].function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(calls[0].function.arguments) == {"city": "Paris"}  # type: ignore[union-attr]
    details = (choice.model_extra or {})["testtime"]
    paris = canonical_calls(parse_tool_calls(PARIS, ChatOptions(tools=(WEATHER,))))
    assert details["answer"] == paris
    assert details["votes"][paris] == 3.0 and len(details["votes"]) == 2
    assert details["aggregation"] == "majority"


def test_text_replies_outvoting_tool_calls_are_aggregated_as_text(serve: Any) -> None:
    texts = ["It is sunny.", "Sunny and warm.", "I cannot check, sorry.", PARIS, PARIS]
    with serve(cycling(texts, usc="The most consistent response is Response 2")) as gw:
        r = gw.post("/v1/chat/completions", {
            "model": "self-consistency:n=5@scripted", "messages": ASK, "tools": [WEATHER],
            "testtime": {"details": True}})
    body = r.json()
    choice = body["choices"][0]
    assert choice["finish_reason"] == "stop" and "tool_calls" not in choice["message"]
    assert choice["message"]["content"] == "Sunny and warm."
    assert choice["testtime"]["aggregation"] == "usc"
    assert body["usage"]["testtime"]["verifier_calls"] == 1


def test_tool_calls_stream_as_deltas(serve: Any) -> None:
    with serve(cycling([PARIS])) as gw:
        chunks = list(client(gw).chat.completions.create(
            model="self-consistency:n=3@scripted", messages=ASK,  # type: ignore[arg-type]
            tools=[WEATHER], stream=True))  # type: ignore[list-item]
    deltas = [ch.choices[0].delta for ch in chunks if ch.choices]
    calls = [c for d in deltas for c in d.tool_calls or ()]
    assert len(calls) == 1 and calls[0].function is not None
    assert calls[0].function.name == "get_weather" and calls[0].index == 0
    assert json.loads(calls[0].function.arguments or "") == {"city": "Paris"}
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "tool_calls"


# --- free text ------------------------------------------------------------------------------

def test_open_ended_prompt_is_aggregated_by_universal_self_consistency(serve: Any) -> None:
    texts = ["A steel bottle that keeps drinks cold for 24 hours.",
             "Keeps water cold all day; 750 ml, steel.",
             "Durable, leak-proof, 3 colours.",
             "The bottle for every trip."]
    engine = cycling(texts, usc="The most consistent response is Response 2.")
    with serve(engine) as gw:
        r = gw.post("/v1/chat/completions", {
            "model": "self-consistency:n=4@scripted",
            "messages": [{"role": "user", "content": "Write a short product description."}],
            "testtime": {"details": True}})
    choice = r.json()["choices"][0]
    assert choice["message"]["content"] == texts[1]
    assert choice["testtime"]["aggregation"] == "usc"
    assert choice["testtime"]["answer"] is None and choice["testtime"]["votes"] == {}
    shown = engine.requests[-1].prompt.messages[-1].content
    assert all(f"Response {i}: {t}" in shown for i, t in enumerate(texts, 1))
    assert "Write a short product description." in shown


def test_unreadable_usc_reply_falls_back_to_word_overlap(serve: Any) -> None:
    texts = ["red bottle keeps cold", "blue bottle keeps cold", "a lamp", "red bottle keeps"]
    with serve(cycling(texts, usc="I like them all")) as gw:
        r = gw.post("/v1/chat/completions", {
            "model": "self-consistency:n=4@scripted",
            "messages": [{"role": "user", "content": "Describe a bottle."}]})
    choice = r.json()["choices"][0]
    assert choice["testtime"]["aggregation"] == "usc-overlap"
    assert choice["message"]["content"] == "red bottle keeps cold"


def test_marked_answers_still_vote_exactly(serve: Any) -> None:
    texts = ["So the answer is 4.", "The answer is 4.0", "The answer is 5.", "It is 4 units."]
    with serve(cycling(texts)) as gw:
        r = gw.post("/v1/chat/completions", {
            "model": "self-consistency:n=4@scripted",
            "messages": [{"role": "user", "content": "What is 2+2?"}],
            "testtime": {"details": True}})
    details = r.json()["choices"][0]["testtime"]
    assert details["aggregation"] == "majority" and details["votes"] == {"4": 2.0, "5": 1.0}


# --- reasoning ------------------------------------------------------------------------------

def test_thinking_is_split_out_of_content(serve: Any) -> None:
    engine = ScriptedBackend(responder=lambda p, i, r: "<think>2 and 2 make 4</think>It is 4.")
    with serve(engine) as gw:
        c = client(gw)
        msg = c.chat.completions.create(model="scripted", messages=ASK).choices[0].message  # type: ignore[arg-type]
        extra = msg.model_extra or {}
        assert msg.content == "It is 4."
        assert extra["reasoning_content"] == extra["reasoning"] == "2 and 2 make 4"
        chunks = list(c.chat.completions.create(
            model="self-consistency:n=2@scripted", messages=ASK, stream=True))  # type: ignore[arg-type]
    deltas = [ch.choices[0].delta for ch in chunks if ch.choices]
    assert "".join(d.content or "" for d in deltas) == "It is 4."
    assert [(d.model_extra or {}).get("reasoning_content") for d in deltas
            if (d.model_extra or {}).get("reasoning_content")] == ["2 and 2 make 4"]


def test_reasoning_effort_picks_the_operator_preset(serve: Any) -> None:
    presets = {"high": {"strategy": "self-consistency:n=3", "budget": "tokens=5000"},
               "low": {"strategy": "single"}}
    with serve(ScriptedBackend(), reasoning_effort=presets) as gw:
        high = gw.post("/v1/chat/completions", {"model": "scripted", "messages": ASK,
                                                "reasoning_effort": "high"}).json()
        assert high["choices"][0]["testtime"]["strategy"] == "self-consistency:n=3"
        assert high["usage"]["testtime"]["samples"] == 3
        low = gw.post("/v1/chat/completions", {"model": "scripted", "messages": ASK,
                                               "reasoning_effort": "low"}).json()
        assert low["usage"]["testtime"]["samples"] == 1
        r = gw.post("/v1/chat/completions", {"model": "scripted", "messages": ASK,
                                             "reasoning_effort": "medium"})
        assert r.status_code == 400 and r.json()["error"]["param"] == "reasoning_effort"


# --- request fields honoured or refused -------------------------------------------------------

def test_request_fields_reach_every_sample(serve: Any) -> None:
    engine = ScriptedBackend(responder=lambda p, i, r: "one two STOP three")
    with serve(engine) as gw:
        r = client(gw).chat.completions.create(
            model="self-consistency:n=2@scripted", messages=ASK,  # type: ignore[arg-type]
            stop=["STOP"], top_p=0.5, seed=7, max_completion_tokens=9, logprobs=True,
            top_logprobs=2)
    assert r.choices[0].message.content == "one two "
    lp = r.choices[0].logprobs
    assert lp is not None and [t.token for t in lp.content or ()] == ["one", "two"]
    req = engine.requests[-1]
    assert req.stop == ("STOP",) and req.top_p == 0.5 and req.max_tokens == 9
    assert req.logprobs and req.top_logprobs == 2


def test_json_response_format_reaches_the_engine(serve: Any) -> None:
    engine = ScriptedBackend(responder=lambda p, i, r: '{"city": "Paris"}')
    fmt = {"type": "json_schema", "json_schema": {"name": "place", "schema": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}
    with serve(engine) as gw:
        r = gw.post("/v1/chat/completions", {"model": "scripted", "messages": ASK,
                                             "response_format": fmt})
        assert r.status_code == 200
    assert engine.requests[-1].prompt.options.response_format == fmt


@pytest.mark.parametrize(("extra", "param"), [
    ({"model": "beam@scripted", "stop": ["x"]}, "stop"),
    ({"model": "beam@scripted", "tools": [WEATHER]}, "tools"),
    ({"model": "particle-filter@scripted", "logprobs": True}, "logprobs"),
    ({"model": "budget-forcing@scripted", "response_format": {"type": "json_object"}},
     "response_format"),
    ({"frequency_penalty": 0.5}, "frequency_penalty"),
    ({"logit_bias": {"50256": -100}}, "logit_bias"),
    ({"functions": [{"name": "f"}]}, "functions"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"stop": [""]}, "stop"),
    ({"top_p": 0}, "top_p"),
    ({"top_logprobs": 21}, "top_logprobs"),
    ({"reasoning_effort": "high"}, "reasoning_effort"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
     "tool_choice"),
    ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]},
     "tools.0.function.name"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
     "response_format.json_schema"),
    ({"messages": [{"role": "user", "content": "hi"},
                   {"role": "tool", "content": "18 C"}]}, "messages.1.tool_call_id"),
    ({"stream": True, "testtime": {"progress": "yes"}}, "testtime.progress"),
])
def test_fields_that_cannot_be_honoured_are_refused(serve: Any, extra: dict[str, Any],
                                                    param: str) -> None:
    engine = ScriptedBackend()
    with serve(engine) as gw:
        r = gw.post("/v1/chat/completions", {"model": "scripted", "messages": ASK, **extra})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param
    assert engine.requests == []


def test_neutral_values_of_unsupported_fields_are_accepted(serve: Any) -> None:
    with serve(ScriptedBackend()) as gw:
        r = gw.post("/v1/chat/completions", {
            "model": "scripted", "messages": ASK, "frequency_penalty": 0,
            "presence_penalty": 0.0, "user": "u1", "metadata": {"a": "b"}})
    assert r.status_code == 200, r.text


# --- streaming every strategy -----------------------------------------------------------------

class Slow(ScriptedBackend):
    """A scripted engine that takes a while and says when its last call has returned."""

    def __init__(self) -> None:
        super().__init__(responder=lambda p, i, r: "The answer is 4.", delay=0.3)
        self.finished = threading.Event()

    async def generate(self, req: GenerationRequest) -> Generation:
        gen = await super().generate(req)
        self.finished.set()
        return gen


def test_self_consistency_streams_before_the_strategy_ends(serve: Any) -> None:
    engine = Slow()
    with serve(engine, keepalive=0.2) as gw:
        stream = client(gw).chat.completions.create(
            model="self-consistency:n=3@scripted", messages=ASK, stream=True,  # type: ignore[arg-type]
            stream_options={"include_usage": True})
        chunks = iter(stream)
        first = next(chunks)
        assert not engine.finished.is_set()
        assert first.choices[0].delta.role == "assistant"
        rest = list(chunks)
    assert engine.finished.is_set()
    assert "".join(ch.choices[0].delta.content or "" for ch in rest if ch.choices) == (
        "The answer is 4.")
    assert [ch.choices[0].finish_reason for ch in rest if ch.choices][-1] == "stop"
    assert rest[-1].usage is not None and rest[-1].usage.completion_tokens == 12


def test_keepalive_comments_and_progress_chunks(serve: Any) -> None:
    texts = ["The answer is 4.", "The answer is 4.", "The answer is 5."]
    engine = cycling(texts)
    engine.delay = 0.1
    with serve(engine, keepalive=0.05) as gw, httpx.stream(
            "POST", gw.url + "/v1/chat/completions", timeout=60, json={
                "model": "early-stop:batch=2,max_n=6,threshold=0.99@scripted",
                "messages": ASK, "stream": True, "testtime": {"progress": True}}) as r:
        lines = [line for line in r.iter_lines() if line]
    assert ": keep-alive" in lines
    events = [json.loads(line[6:]) for line in lines if line.startswith("data: {")]
    progress = [e["choices"][0]["testtime"]["progress"] for e in events
                if "progress" in e["choices"][0].get("testtime", {})]
    assert [p["samples"] for p in progress] == [2, 4, 6]
    assert progress[0]["leader"] == "4" and progress[0]["leader_votes"] == 2.0
    assert progress[-1]["tokens"] > progress[0]["tokens"] > 0
    assert lines[-1] == "data: [DONE]"


def test_client_leaving_a_stream_stops_the_work(serve: Any) -> None:
    engine = Slow()
    engine.delay = 2.0
    with serve(engine, keepalive=0.05) as gw:
        with httpx.stream("POST", gw.url + "/v1/chat/completions", timeout=60, json={
                "model": "self-consistency:n=2@scripted", "messages": ASK,
                "stream": True}) as r:
            next(r.iter_lines())
        deadline = time.monotonic() + 20
        while engine.cancelled == 0 and time.monotonic() < deadline:
            asyncio.run(asyncio.sleep(0.05))
    assert engine.cancelled == 1 and not engine.finished.is_set()


@pytest.mark.parametrize("pieces", [
    ["<think>", "add", " them", "</think>", "It is", " 4."],
    ["<th", "ink>\nadd them</th", "ink>\n\nIt is 4."],
    ["<think>add them</think>It is 4."],
])
def test_streamed_tokens_split_thinking_from_content(pieces: list[str]) -> None:
    from testtime.serve.streaming import ThinkSplitter

    split = ThinkSplitter()
    out = [d for p in pieces for d in split.feed(p)] + split.flush()
    assert "".join(t for k, t in out if k == "reasoning") == "add them"
    assert "".join(t for k, t in out if k == "content") == "It is 4."


def test_plain_streamed_text_is_all_content() -> None:
    from testtime.serve.streaming import ThinkSplitter

    split = ThinkSplitter()
    out = [d for p in ["<", "b>bold</b> and", " more"] for d in split.feed(p)] + split.flush()
    assert out[0] == ("content", "<b>bold</b> and") and "".join(t for _, t in out) == (
        "<b>bold</b> and more")


def test_upstream_that_cannot_send_tools_is_a_400(serve: Any) -> None:
    from testtime.backends.openai import OpenAIBackend

    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(200, json={"data": [{"id": "m"}]})

    engine = OpenAIBackend(url="http://upstream.invalid/v1", model="m", mode="completions",
                           transport=httpx.MockTransport(handler), retries=0)
    with serve(engine) as gw:
        r = gw.post("/v1/chat/completions", {"model": "m", "messages": ASK, "tools": [WEATHER]})
    assert r.status_code == 400 and r.json()["error"]["code"] == "unsupported_parameter"
    assert "mode=chat" in r.json()["error"]["message"]
    assert not any(p.endswith("/completions") for p in seen)
