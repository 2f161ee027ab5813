"""The OpenAI Responses API (``POST /v1/responses``) on the scripted engine, through a live
gateway and the official openai client: strategies, budgets, function tools, streaming and
refusals. Shapes are checked against the openai package's own types (the real-model checks
are in test_gateway_responses_model.py)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import httpx
import openai
import pytest
from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseErrorEvent,
    ResponseFailedEvent,
    ResponseFunctionToolCall,
    ResponseIncompleteEvent,
    ResponseOutputMessage,
    ResponseReasoningItem,
    ResponseStreamEvent,
    ResponseTextDeltaEvent,
)
from pydantic import TypeAdapter

from testtime.backends.scripted import ScriptedBackend
from testtime.types import GenerationRequest, Prompt

WEATHER = {"type": "function", "name": "get_weather", "description": "Current weather",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                          "required": ["city"]}, "strict": False}
PARIS = '{"name": "get_weather", "arguments": {"city": "Paris"}}'
LYON = '{"name": "get_weather", "arguments": {"city": "Lyon"}}'
EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)


def client(gw: Any, key: str = "x") -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0, timeout=60)


def raw_events(gw: Any, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The SSE events of a streamed request, each checked against the SDK's event types."""
    events = []
    with httpx.stream("POST", gw.url + "/v1/responses", json={**body, "stream": True},
                      timeout=60) as resp:
        assert resp.status_code == 200, resp.read()
        name = None
        for line in resp.iter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = json.loads(line.removeprefix("data: "))
                assert data["type"] == name
                if name != "testtime.progress":
                    EVENTS.validate_python(data)
                events.append(data)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events


# --- the response object ----------------------------------------------------------------------

def test_a_response_has_the_sdk_shape_and_counts_every_token(serve: Any) -> None:
    engine = ScriptedBackend(responder=lambda p, i, r: "<think>2 and 2</think>The answer is 4.")
    with serve(engine) as gw:
        raw = gw.post("/v1/responses", {
            "model": "self-consistency:n=3@scripted", "input": "What is 2+2?",
            "instructions": "Be brief.", "metadata": {"run": "7"}, "max_output_tokens": 50})
        assert raw.status_code == 200, raw.text
        resp = Response.model_validate(raw.json())
        sdk = client(gw).responses.create(model="scripted", input="What is 2+2?")
    assert resp.id.startswith("resp_") and resp.object == "response"
    assert resp.status == "completed" and resp.incomplete_details is None
    assert resp.model == "self-consistency:n=3@scripted" and resp.metadata == {"run": "7"}
    assert resp.instructions == "Be brief." and resp.max_output_tokens == 50
    reasoning, message = resp.output
    assert isinstance(reasoning, ResponseReasoningItem) and isinstance(message,
                                                                       ResponseOutputMessage)
    assert reasoning.content is not None and reasoning.content[0].text == "2 and 2"
    assert resp.output_text == "The answer is 4."
    usage = resp.usage
    assert usage is not None
    extra = raw.json()["usage"]["testtime"]
    assert extra["samples"] == 3
    assert usage.output_tokens == extra["generated_tokens"] + extra["verifier_tokens"]
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    shown = usage.output_tokens - usage.output_tokens_details.reasoning_tokens
    assert shown == extra["generated_tokens"] // 3  # the other two samples are the search
    assert raw.json()["testtime"]["strategy"] == "self-consistency:n=3"
    prompt = engine.requests[0].prompt
    assert [(m.role, m.content) for m in prompt.messages] == [
        ("system", "Be brief."), ("user", "What is 2+2?")]
    assert engine.requests[0].max_tokens == 50
    assert sdk.output_text == "The answer is 4." and sdk.usage is not None
    assert sdk.usage.output_tokens_details.reasoning_tokens == 0  # single: nothing hidden


def test_a_cut_reply_is_incomplete_for_max_output_tokens(serve: Any) -> None:
    with serve(ScriptedBackend(responder=lambda p, i, r: "one two three four five")) as gw:
        resp = client(gw).responses.create(model="scripted", input="Count.",
                                           max_output_tokens=2)
    assert resp.status == "incomplete"
    assert resp.incomplete_details is not None
    assert resp.incomplete_details.reason == "max_output_tokens"
    assert resp.output_text == "one two" and resp.usage is not None
    assert resp.usage.output_tokens == 2


def test_message_items_content_parts_and_roles_reach_the_engine(serve: Any) -> None:
    engine = ScriptedBackend(responder=lambda p, i, r: "Fine.")
    items = [{"role": "developer", "content": "Use metric units."},
             {"type": "message", "role": "user",
              "content": [{"type": "input_text", "text": "Hi"},
                          {"type": "input_text", "text": " there"}]},
             {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
              "content": [{"type": "output_text", "text": "Hello.", "annotations": []}]},
             {"type": "reasoning", "id": "rs_1", "summary": []},
             {"role": "user", "content": "How are you?"}]
    with serve(engine) as gw:
        resp = client(gw).responses.create(model="scripted", input=items,  # type: ignore[arg-type]
                                           instructions="Be brief.")
    assert resp.output_text == "Fine."
    assert [(m.role, m.content) for m in engine.requests[0].prompt.messages] == [
        ("system", "Be brief.\n\nUse metric units."), ("user", "Hi there"),
        ("assistant", "Hello."), ("user", "How are you?")]


def test_text_format_reaches_the_engine_as_a_response_format(serve: Any) -> None:
    engine = ScriptedBackend(responder=lambda p, i, r: '{"city": "Paris"}')
    schema: dict[str, object] = {"type": "object", "properties": {"city": {"type": "string"}}}
    with serve(engine) as gw:
        resp = client(gw).responses.create(
            model="scripted", input="Where?",
            text={"format": {"type": "json_schema", "name": "place", "schema": schema}})
    assert json.loads(resp.output_text) == {"city": "Paris"}
    assert engine.requests[0].prompt.options.response_format == {
        "type": "json_schema", "json_schema": {"name": "place", "schema": schema}}


# --- strategies and budgets -------------------------------------------------------------------

def test_the_model_field_aliases_extension_and_effort_choose_the_strategy(serve: Any) -> None:
    presets = {"high": {"strategy": "self-consistency:n=4", "budget": "tokens=5000"},
               "low": {"strategy": "single"}}
    with serve(ScriptedBackend(), strategies={"sc2": "self-consistency:n=2"},
               reasoning_effort=presets) as gw:
        c = client(gw)

        def samples(**kwargs: Any) -> int:
            raw = c.responses.with_raw_response.create(input="What is 1+1?", **kwargs)
            return int(json.loads(raw.text)["usage"]["testtime"]["samples"])

        assert samples(model="scripted") == 1
        assert samples(model="self-consistency:n=3@scripted") == 3
        assert samples(model="sc2") == 2
        assert samples(model="scripted",
                       extra_body={"testtime": {"strategy": "self-consistency:n=5"}}) == 5
        assert samples(model="scripted", reasoning={"effort": "high"}) == 4
        assert samples(model="scripted", reasoning={"effort": "low", "summary": "auto"}) == 1
        for effort in ("medium", "xhigh"):
            with pytest.raises(openai.BadRequestError) as refused:
                c.responses.create(model="scripted", input="Hi",
                                   reasoning={"effort": effort})
            assert (refused.value.body or {})["param"] == "reasoning.effort"  # type: ignore[index]
            assert "reasoning.effort" in refused.value.message
        with pytest.raises(openai.BadRequestError) as client_only:
            c.responses.create(model="best-of-n:verifier=[judge:backend=[embedded:x]]@scripted",
                               input="Hi")
        assert client_only.value.code == "operator_only_option"
        with pytest.raises(openai.NotFoundError):
            c.responses.create(model="nope", input="Hi")


def test_budgets_and_key_shares_apply_as_in_chat(serve: Any) -> None:
    words = " ".join(["word"] * 40)
    backend = ScriptedBackend(responder=lambda p, i, r: words)
    key = {"Authorization": "Bearer k"}
    with serve(backend, request_budget="tokens=30", api_keys={"k": {"budget_tokens": 100000}},
               ) as gw:
        capped = gw.post("/v1/responses", {
            "model": "self-consistency:n=4@scripted", "input": "Talk.",
            "testtime": {"details": True}}, headers=key).json()
        assert capped["usage"]["testtime"]["generated_tokens"] <= 30
        assert capped["testtime"]["budget_exhausted"] is True
        tighter = gw.post("/v1/responses", {"model": "scripted", "input": "Talk.",
                                            "testtime": {"budget": "tokens=5"}},
                          headers=key).json()
        assert tighter["usage"]["output_tokens"] <= 5 and tighter["status"] == "incomplete"
        spent = gw.app.state.gateway.guard.spent()["key-" + hashlib.sha256(
            b"k").hexdigest()[:8]]
        assert spent == capped["usage"]["total_tokens"] + tighter["usage"]["total_tokens"]
        bad = gw.post("/v1/responses", {"model": "scripted", "input": "Talk.",
                                        "testtime": {"budget": "tokens=lots"}}, headers=key)
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "testtime.budget"
        assert gw.post("/v1/responses", {"model": "scripted", "input": "x"}).status_code == 401


# --- function tools -------------------------------------------------------------------------

def weather_agent(prompt: Prompt, i: int, req: GenerationRequest) -> str:
    if prompt.messages[-1].role == "tool":
        return f"It is {prompt.messages[-1].content} in Paris."
    return PARIS if i % 3 else LYON


def test_function_calls_round_trip(serve: Any) -> None:
    engine = ScriptedBackend(responder=weather_agent)
    ask = [{"role": "user", "content": "Weather in Paris?"}]
    with serve(engine) as gw:
        c = client(gw)
        first = c.responses.create(model="scripted", input=ask, tools=[WEATHER])  # type: ignore[arg-type, list-item]
        call = first.output[0]
        assert isinstance(call, ResponseFunctionToolCall) and len(first.output) == 1
        assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Lyon"}
        assert first.status == "completed" and first.output_text == ""
        voted = c.responses.create(model="self-consistency:n=3@scripted", input=ask,  # type: ignore[arg-type]
                                   tools=[WEATHER])  # type: ignore[list-item]
        call = voted.output[0]
        assert isinstance(call, ResponseFunctionToolCall)
        assert json.loads(call.arguments) == {"city": "Paris"}  # two samples of three
        follow = [*ask, *(item.model_dump(exclude_none=True) for item in voted.output),
                  {"type": "function_call_output", "call_id": call.call_id, "output": "18 C"}]
        done = c.responses.create(model="scripted", input=follow, tools=[WEATHER])  # type: ignore[arg-type, list-item]
    assert done.output_text == "It is 18 C in Paris."
    messages = engine.requests[-1].prompt.messages
    assert [m.role for m in messages] == ["user", "assistant", "tool"]
    assert messages[1].tool_calls[0].name == "get_weather"
    assert messages[1].tool_calls[0].id == messages[2].tool_call_id == call.call_id
    assert messages[2].name == "get_weather"
    assert engine.requests[-1].prompt.options.tools[0]["function"]["name"] == "get_weather"


def test_function_calls_stream_as_items(serve: Any) -> None:
    with serve(ScriptedBackend(responder=lambda p, i, r: PARIS)) as gw:
        events = raw_events(gw, {"model": "self-consistency:n=2@scripted", "input": "Paris?",
                                 "tools": [WEATHER], "tool_choice": "required"})
    kinds = [e["type"] for e in events]
    assert kinds == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.function_call_arguments.delta",
                     "response.function_call_arguments.done", "response.output_item.done",
                     "response.completed"]
    assert json.loads(events[3]["delta"]) == {"city": "Paris"}
    final = ResponseCompletedEvent.model_validate(events[-1]).response
    assert final.output[0].type == "function_call"
    assert final.output[0].id == events[2]["item"]["id"]


# --- streaming ------------------------------------------------------------------------------

def test_single_streams_tokens_as_text_deltas(serve: Any, word_stream: Any) -> None:
    with serve(word_stream("<think>count up</think>one two three four")) as gw:
        events = raw_events(gw, {"model": "scripted", "input": "Count."})
        c = client(gw)
        sdk = list(c.responses.create(model="scripted", input="Count.", stream=True))
        plain = c.responses.create(model="scripted", input="Count.")
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert "response.reasoning_text.delta" in kinds
    texts = [e["delta"] for e in events if e["type"] == "response.output_text.delta"]
    assert len(texts) >= 3 and "".join(texts) == "one two three four"
    final = ResponseCompletedEvent.model_validate(events[-1]).response
    assert final.output_text == plain.output_text == "one two three four"
    assert [i.type for i in final.output] == ["reasoning", "message"]
    assert final.usage is not None and final.usage.output_tokens > 0
    deltas = [e for e in sdk if isinstance(e, ResponseTextDeltaEvent)]
    assert "".join(d.delta for d in deltas) == "one two three four"
    assert isinstance(sdk[-1], ResponseCompletedEvent)


def test_a_cut_stream_ends_incomplete(serve: Any, word_stream: Any) -> None:
    with serve(word_stream("one two three four five")) as gw:
        events = list(client(gw).responses.create(model="scripted", input="Count.",
                                                  max_output_tokens=3, stream=True))
    last = events[-1]
    assert isinstance(last, ResponseIncompleteEvent)
    assert last.response.status == "incomplete"
    assert last.response.incomplete_details is not None
    assert last.response.incomplete_details.reason == "max_output_tokens"
    assert last.response.output_text == "one two three"


def test_strategies_stream_the_chosen_answer_with_progress(serve: Any) -> None:
    with serve(ScriptedBackend(responder=lambda p, i, r: "The answer is 4.")) as gw:
        events = raw_events(gw, {"model": "self-consistency:n=3@scripted", "input": "2+2?",
                                 "testtime": {"progress": True}})
        sdk = list(client(gw).responses.create(
            model="self-consistency:n=3@scripted", input="2+2?", stream=True,
            extra_body={"testtime": {"progress": True}}))
    kinds = [e["type"] for e in events]
    assert "testtime.progress" in kinds
    progress = next(e for e in events if e["type"] == "testtime.progress")["progress"]
    assert progress["samples"] >= 1 and progress["leader"] == "4"
    assert [e["delta"] for e in events if e["type"] == "response.output_text.delta"] == [
        "The answer is 4."]
    final = ResponseCompletedEvent.model_validate(events[-1]).response
    assert final.output_text == "The answer is 4." and final.usage is not None
    assert (final.usage.model_extra or {})["testtime"]["samples"] == 3
    assert isinstance(sdk[-1], ResponseCompletedEvent)


def test_a_failure_mid_stream_is_an_error_event_and_a_failed_response(serve: Any,
                                                                       word_stream: Any) -> None:
    with serve(word_stream("one two three four", fail_after=2)) as gw:
        events = list(client(gw).responses.create(model="scripted", input="Count.",
                                                  stream=True))
    with pytest.raises(openai.APIStatusError) as before_first_byte, \
            serve(word_stream("one", fail_after=0)) as broken:
        list(client(broken).responses.create(model="scripted", input="Count.", stream=True))
    assert [e.delta for e in events if isinstance(e, ResponseTextDeltaEvent)] == ["one", " two"]
    error, failed = events[-2:]
    assert isinstance(error, ResponseErrorEvent) and error.code == "upstream_error"
    assert isinstance(failed, ResponseFailedEvent) and failed.response.status == "failed"
    assert failed.response.error is not None
    assert failed.response.error.code == "server_error"
    assert before_first_byte.value.status_code == 502


# --- refusals -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("extra", "param", "code"), [
    ({"previous_response_id": "resp_1"}, "previous_response_id", "unsupported_parameter"),
    ({"background": True}, "background", "unsupported_parameter"),
    ({"conversation": "conv_1"}, "conversation", "unsupported_parameter"),
    ({"include": ["reasoning.encrypted_content"]}, "include", "unsupported_parameter"),
    ({"truncation": "auto"}, "truncation", "unsupported_parameter"),
    ({"tools": [{"type": "web_search"}]}, "tools.0.type", "unsupported_parameter"),
    ({"tools": [{"type": "function"}]}, "tools.0.name", "missing_required_parameter"),
    ({"tools": [{"type": "function", "name": "bad name!"}]}, "tools.0.name", None),
    ({"tool_choice": {"type": "function", "name": "nope"}, "tools": [WEATHER]},
     "tool_choice", None),
    ({"tool_choice": {"type": "web_search_preview"}}, "tool_choice", "unsupported_parameter"),
    ({"tool_choice": "required"}, "tool_choice", None),
    ({"model": "beam@scripted", "tools": [WEATHER]}, "tools", "unsupported_parameter"),
    ({"model": "beam@scripted", "text": {"format": {"type": "json_object"}}}, "text.format",
     "unsupported_parameter"),
    ({"text": {"format": {"type": "json_schema", "name": "x"}}}, "text.format", None),
    ({"text": {"verbosity": "low"}}, "text.verbosity", "unsupported_parameter"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
     "input.0.content.0", "unsupported_content"),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
     "input.0.content.0", "unsupported_content"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input.0.type",
     "unsupported_parameter"),
    ({"input": [{"type": "web_search_call", "id": "ws_1"}]}, "input.0.type",
     "unsupported_parameter"),
    ({"input": [{"role": "user", "content": "hi"},
                {"type": "function_call_output", "output": "18 C"}]}, "input.1.call_id",
     "missing_required_parameter"),
    ({"input": [{"role": "user", "content": "hi"},
                {"type": "function_call", "call_id": "c1", "arguments": "{}"}]},
     "input.1.name", "missing_required_parameter"),
    ({"input": [{"role": "assistant", "content": "hi"}]}, "input", None),
    ({"input": [{"role": "user", "content": "   "}]}, "input.0.content", None),
    ({"input": []}, "input", None),
    ({"input": ""}, "input", None),
    ({"input": [{"role": "robot", "content": "hi"}]}, "input.0.role", "invalid_type"),
    ({"max_output_tokens": 0}, "max_output_tokens", None),
    ({"temperature": 3}, "temperature", None),
    ({"top_p": 0}, "top_p", None),
    ({"metadata": {"k": 1}}, "metadata.k", "invalid_type"),
    ({"reasoning": {"effort": "high", "mode": "pro"}}, "reasoning.mode", "unknown_parameter"),
    ({"frequency_penalty": 0.5}, "frequency_penalty", "unknown_parameter"),
    ({"stream": "yes"}, "stream", "invalid_type"),
    ({"testtime": {"strategy": "self-consistency:n=0"}}, "testtime.strategy", None),
])
def test_what_cannot_be_honoured_is_a_clear_400(serve: Any, extra: dict[str, Any], param: str,
                                                code: str | None) -> None:
    with serve(ScriptedBackend()) as gw:
        body = {"model": "scripted", "input": "Hi", **extra}
        resp = gw.post("/v1/responses", body)
        assert resp.status_code == 400, resp.text
        err = resp.json()["error"]
        assert err["param"] == param, err
        assert err["message"] and err["type"] == "invalid_request_error"
        if code is not None:
            assert err["code"] == code, err
        sdk_body = {k: v for k, v in body.items() if k not in ("model", "input")}
        with pytest.raises(openai.BadRequestError):
            client(gw).responses.create(model=body["model"], input=body["input"],
                                        extra_body=sdk_body)


def test_a_body_that_is_not_json_is_a_400(serve: Any) -> None:
    with serve(ScriptedBackend()) as gw:
        resp = httpx.post(gw.url + "/v1/responses", content=b'{"model": ',
                          headers={"content-type": "application/json"})
        assert resp.status_code == 400 and resp.json()["error"]["code"] == "invalid_json"
        missing = gw.post("/v1/responses", {"model": "scripted"})
        assert missing.status_code == 400
        assert missing.json()["error"]["param"] == "input"
