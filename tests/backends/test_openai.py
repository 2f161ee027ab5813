"""The OpenAI-compatible client against scripted HTTP servers (httpx.MockTransport)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from testtime.backends.base import BackendError
from testtime.backends.llamacpp_server import free_port
from testtime.backends.openai import OpenAIBackend
from testtime.strategies.base import Context
from testtime.traces import Trace
from testtime.types import GenerationRequest, Piece, Problem, Prompt

PROMPT = Prompt.chat("What is 2+2?")
Handler = Callable[[dict[str, Any]], httpx.Response]


class FakeServer:
    """Records requests; answers ``/models`` itself and chat calls with ``handler``."""

    def __init__(self, handler: Handler, owned_by: str = "vllm", slots: int = 0) -> None:
        self.handler = handler
        self.owned_by = owned_by
        self.slots = slots
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": [{"id": "m", "owned_by": self.owned_by}]})
        if request.url.path == "/props":
            return httpx.Response(200 if self.slots else 404, json={"total_slots": self.slots})
        body = json.loads(request.content)
        self.bodies.append(body)
        return self.handler(body)

    def backend(self, **settings: Any) -> OpenAIBackend:
        settings.setdefault("backoff", 0.0)
        return OpenAIBackend(url="http://test/v1", transport=httpx.MockTransport(self),
                             **settings)


def choice(i: int, text: str, tokens: int) -> dict[str, Any]:
    content = [{"token": "x", "logprob": -0.5, "top_logprobs": []} for _ in range(tokens)]
    return {"index": i, "message": {"role": "assistant", "content": text},
            "finish_reason": "stop", "logprobs": {"content": content}}


def reply(choices: list[dict[str, Any]], completion_tokens: int) -> httpx.Response:
    return httpx.Response(200, json={"choices": choices, "usage": {
        "prompt_tokens": 12, "completion_tokens": completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 4}}})


def llamacpp_like(body: dict[str, Any]) -> httpx.Response:
    """Honours n; like llama.cpp, usage counts one choice only."""
    n = body["n"]
    return reply([choice(i, f"answer {i}", 3 + i) for i in range(n)], completion_tokens=3)


async def test_native_n_in_one_request_with_per_choice_counts() -> None:
    server = FakeServer(llamacpp_like)
    backend = server.backend()
    gen = await backend.generate(GenerationRequest(prompt=PROMPT, n=4, seed=7))
    assert len(server.bodies) == 1
    assert server.bodies[0]["n"] == 4 and server.bodies[0]["logprobs"] is True
    assert [c.generated_tokens for c in gen.completions] == [3, 4, 5, 6]
    assert gen.generated_tokens == 18
    assert gen.counted_by == "logprobs per choice (server usage disagreed)"
    assert (gen.prompt_tokens, gen.cached_tokens) == (12, 4)
    assert [c.text for c in gen.completions] == [f"answer {i}" for i in range(4)]
    await backend.close()


async def test_usage_that_sums_all_choices_is_cross_checked() -> None:
    server = FakeServer(lambda b: reply([choice(0, "a", 2), choice(1, "b", 5)], 7))
    backend = server.backend()
    gen = await backend.generate(GenerationRequest(prompt=PROMPT, n=2))
    assert gen.generated_tokens == 7
    assert gen.counted_by == "server-usage, checked per choice"
    await backend.close()


async def test_server_that_ignores_n_falls_back_to_concurrency_and_remembers() -> None:
    server = FakeServer(lambda b: reply([choice(0, f"s{b.get('seed')}", 2)], 2))
    backend = server.backend()
    gen = await backend.generate(GenerationRequest(prompt=PROMPT, n=4, seed=100))
    assert len(gen.completions) == 4
    assert gen.generated_tokens == 8
    assert [b["n"] for b in server.bodies] == [4, 1, 1, 1]
    assert len({c.text for c in gen.completions[1:]}) == 3  # distinct seeds
    server.bodies.clear()
    await backend.generate(GenerationRequest(prompt=PROMPT, n=3, seed=1))
    assert [b["n"] for b in server.bodies] == [1, 1, 1]
    await backend.close()


async def test_n_mode_concurrent_never_sends_n() -> None:
    server = FakeServer(llamacpp_like)
    backend = server.backend(n_mode="concurrent")
    gen = await backend.generate(GenerationRequest(prompt=PROMPT, n=3))
    assert [b["n"] for b in server.bodies] == [1, 1, 1]
    assert gen.counted_by == "server-usage"
    await backend.close()


async def test_retries_with_backoff_on_503_then_succeeds() -> None:
    failures = [503, 503]

    def flaky(body: dict[str, Any]) -> httpx.Response:
        if failures:
            return httpx.Response(failures.pop(), text="loading model")
        return reply([choice(0, "ok", 2)], 2)

    server = FakeServer(flaky)
    backend = server.backend(backoff=0.05, retries=3)
    started = time.monotonic()
    gen = await backend.generate(GenerationRequest(prompt=PROMPT))
    assert gen.completions[0].text == "ok"
    assert len(server.bodies) == 3
    assert time.monotonic() - started >= 0.05 + 0.10  # backoff doubles after each failure
    await backend.close()


async def test_503_until_retries_run_out_is_a_clear_error() -> None:
    server = FakeServer(lambda b: httpx.Response(503, text="busy"))
    backend = server.backend(retries=2)
    with pytest.raises(BackendError, match=r"failed after 3 tries: HTTP 503: busy"):
        await backend.generate(GenerationRequest(prompt=PROMPT))
    assert len(server.bodies) == 3
    await backend.close()


async def test_400_is_not_retried() -> None:
    server = FakeServer(lambda b: httpx.Response(400, json={"error": "n too large"}))
    backend = server.backend(retries=3)
    with pytest.raises(BackendError, match=r"HTTP 400.*n too large"):
        await backend.generate(GenerationRequest(prompt=PROMPT, n=2))
    assert len(server.bodies) == 1
    await backend.close()


async def test_non_json_reply_is_a_backend_error() -> None:
    server = FakeServer(lambda b: httpx.Response(200, text="<html>proxy</html>"))
    backend = server.backend()
    with pytest.raises(BackendError, match="not JSON"):
        await backend.generate(GenerationRequest(prompt=PROMPT))
    await backend.close()


async def test_unreachable_server_is_a_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    backend = OpenAIBackend(url=url, retries=1, backoff=0.0)
    with pytest.raises(BackendError, match=r"cannot reach .*127\.0\.0\.1.*is the server running"):
        await backend.ready()
    await backend.close()


def sse(events: list[dict[str, Any]]) -> httpx.Response:
    text = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
    return httpx.Response(200, text=text, headers={"content-type": "text/event-stream"})


def streamed(body: dict[str, Any]) -> httpx.Response:
    """A llama.cpp-style stream: pieces per choice, timings on each choice's final chunk."""
    events: list[dict[str, Any]] = []
    for i in range(body["n"]):
        events.append({"choices": [{"index": i, "delta": {"content": "é"}}]})
    for i in range(body["n"]):
        events.append({"choices": [{"index": i, "delta": {"content": f"{i}"}}]})
        events.append({"choices": [{"index": i, "delta": {}, "finish_reason": "length"}],
                       "timings": {"predicted_n": 10 + i, "prompt_n": 5, "cache_n": 20}})
    return sse(events)


async def test_llamacpp_server_is_streamed_and_counted_from_timings() -> None:
    server = FakeServer(streamed, owned_by="llamacpp")
    backend = server.backend()
    gen = await backend.generate(GenerationRequest(prompt=PROMPT, n=3))
    body = server.bodies[0]
    assert body["stream"] is True and "logprobs" not in body
    assert [c.text for c in gen.completions] == ["é0", "é1", "é2"]
    assert [c.generated_tokens for c in gen.completions] == [10, 11, 12]
    assert [c.finish_reason for c in gen.completions] == ["length"] * 3
    assert gen.counted_by == "engine timings per choice (streamed)"
    assert (gen.prompt_tokens, gen.cached_tokens) == (25, 20)
    await backend.close()


async def test_stream_off_keeps_plain_replies_for_llamacpp() -> None:
    server = FakeServer(llamacpp_like, owned_by="llamacpp")
    backend = server.backend(stream="off")
    gen = await backend.generate(GenerationRequest(prompt=PROMPT, n=2))
    assert "stream" not in server.bodies[0]
    assert gen.generated_tokens == 3 + 4
    await backend.close()


async def test_error_event_inside_a_stream_is_a_backend_error() -> None:
    server = FakeServer(lambda b: sse([{"error": {"message": "slot unavailable"}}]),
                        owned_by="llamacpp")
    backend = server.backend()
    with pytest.raises(BackendError, match="slot unavailable"):
        await backend.generate(GenerationRequest(prompt=PROMPT, n=2))
    await backend.close()


async def test_llamacpp_requests_wait_until_all_their_samples_fit_in_free_slots() -> None:
    in_flight, peak = 0, 0

    async def slow(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": [{"id": "m", "owned_by": "llamacpp"}]})
        if request.url.path == "/props":
            return httpx.Response(200, json={"total_slots": 4})
        n = json.loads(request.content)["n"]
        in_flight += n
        peak = max(peak, in_flight)
        await asyncio.sleep(0.02)
        in_flight -= n
        return reply([choice(i, "x", 1) for i in range(n)], 1)

    backend = OpenAIBackend(url="http://test/v1", transport=httpx.MockTransport(slow),
                            stream="off")
    await backend.ready()
    assert backend.capabilities.max_n == 4
    gens = await asyncio.gather(*(backend.generate(GenerationRequest(prompt=PROMPT, n=n))
                                  for n in (3, 3, 6, 2)))
    assert [len(g.completions) for g in gens] == [3, 3, 6, 2]
    assert peak == 4  # never more samples in flight than the server has slots
    await backend.close()


async def test_stream_yields_logprob_pieces_and_a_stopped_trace_is_billed_as_streamed() -> None:
    sent: list[int] = []

    async def events() -> Any:
        for i in range(40):
            sent.append(i)
            chunk = {"choices": [{"index": 0, "delta": {"content": f" w{i}"}, "logprobs": {
                "content": [{"token": f" w{i}", "logprob": -0.1,
                             "top_logprobs": [{"token": f" w{i}", "logprob": -0.1},
                                              {"token": "x", "logprob": -2.5}]}]}}],
                     "timings": {"predicted_n": i + 1, "prompt_n": 7, "cache_n": 0}}
            yield f"data: {json.dumps(chunk)}\n\n".encode()
            await asyncio.sleep(0.01)
        yield b"data: [DONE]\n\n"

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": [{"id": "m", "owned_by": "llamacpp"}]})
        if request.url.path == "/props":
            return httpx.Response(404)
        assert json.loads(request.content)["stream"] is True
        return httpx.Response(200, content=events(),
                              headers={"content-type": "text/event-stream"})

    backend = OpenAIBackend(url="http://test/v1", transport=httpx.MockTransport(handler))
    ctx = Context(backend=backend)

    def watch(trace: Trace, piece: Piece) -> None:
        assert piece.top_logprobs[0] == {piece.tokens[0]: -0.1, "x": -2.5}
        if trace.n_tokens >= 3:
            trace.stop()

    traces = await ctx.traces(Problem(id="p", question="q"), 1, watch=watch, top_logprobs=2)
    done = traces[0].candidate
    assert done is not None and done.completion.finish_reason == "stopped"
    assert done.text == " w0 w1 w2"
    await asyncio.sleep(0.1)
    assert len(sent) < 40  # the connection was closed: the server stopped streaming
    u = ctx.ledger.close()
    # billed what the server had counted when the stream was closed (its last timings)
    assert u.stopped_traces == 1 and 3 <= u.generated_tokens == u.stopped_tokens <= len(sent)
    await backend.close()
