"""llama.cpp's own HTTP server (``testtime engine-serve``) driven by the OpenAI backend."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from testtime.backends.embedded import EmbeddedBackend
from testtime.backends.llamacpp_server import LlamaCppServer
from testtime.backends.openai import OpenAIBackend
from testtime.budget import Ledger, on_stopped
from testtime.models import read_shape, resolve
from testtime.types import Generation, GenerationRequest, Prompt

PROMPT = Prompt.chat("List three colours, one per line.")


@pytest.fixture(scope="module")
def server() -> Iterator[LlamaCppServer]:
    """SmolLM2 behind llama.cpp's HTTP server in a child process."""
    with LlamaCppServer("smollm2-135m", slots=4, ctx=512,
                        threads=int(os.environ.get("TESTTIME_THREADS", os.cpu_count() or 2))
                        ) as srv:
        yield srv


def test_engine_serve_rejects_an_unknown_model_without_traceback() -> None:
    proc = subprocess.run([sys.executable, "-m", "testtime.cli", "engine-serve", "no-such-pack",
                           "--port", "9"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "unknown model pack 'no-such-pack'" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.model
def test_server_is_stopped_by_pid_on_exit() -> None:
    with LlamaCppServer("smollm2-135m", slots=1, ctx=256) as srv:
        proc = srv.process
        assert proc is not None
        assert httpx.get(f"{srv.url}/models", timeout=10).json()["data"][0]["id"] == "smollm2-135m"
    assert proc.poll() is not None
    with pytest.raises(ProcessLookupError):
        os.kill(proc.pid, 0)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{srv.url}/models", timeout=2)


@pytest.mark.model
async def test_n4_counts_are_exact_per_choice_and_exceed_server_usage(
        server: LlamaCppServer) -> None:
    raw = httpx.post(f"{server.url}/chat/completions", timeout=300, json={
        "messages": [{"role": "user", "content": PROMPT.messages[0].content}], "n": 4,
        "max_tokens": 16, "temperature": 1.0, "seed": 3, "logprobs": True}).json()
    per_choice = [len(c["logprobs"]["content"]) for c in raw["choices"]]
    assert sum(per_choice) > raw["usage"]["completion_tokens"]  # the server counts one choice

    backend = OpenAIBackend(url=server.url)
    gen = await backend.generate(GenerationRequest(prompt=PROMPT, n=4, max_tokens=16,
                                                   temperature=1.0, seed=3, logprobs=True))
    await backend.close()
    assert len(gen.completions) == 4
    assert gen.counted_by == "engine timings per choice (streamed)"
    assert gen.generated_tokens > raw["usage"]["completion_tokens"]
    for c in gen.completions:
        assert c.logprobs is not None
        assert 0 < c.generated_tokens <= 16
        # Logprobs miss the end-of-sequence token and merge tokens that split a UTF-8 char.
        assert len(c.logprobs) <= c.generated_tokens
        if c.text.isascii():
            assert c.generated_tokens - len(c.logprobs) == int(c.finish_reason == "stop")
    assert gen.prompt_tokens > 10


@pytest.mark.model
async def test_greedy_counts_and_prefix_continuation_match_the_embedded_engine() -> None:
    """The same engine settings give the same greedy text and token counts in and out of process.

    Both engines are fresh and see prompts neither has cached: a prompt-cache hit evaluates the
    last tokens in a smaller batch, whose kernels round differently, and SmolLM2's near-tied
    logits then flip. Equal states, not luck, make the comparison exact.
    """
    threads = int(os.environ.get("TESTTIME_THREADS", os.cpu_count() or 2))
    settings = {"slots": 4, "ctx": 512, "threads": threads}
    prompt = Prompt.chat("Greedy check: list three colours, one per line.")
    prefixed = prompt.extend("1. Red\n2.")
    with LlamaCppServer("smollm2-135m", **settings) as srv:
        backend = OpenAIBackend(url=srv.url)
        local = EmbeddedBackend(model="smollm2-135m", **settings)
        try:
            for p in (prompt, prefixed):
                req = GenerationRequest(prompt=p, n=2, max_tokens=12, temperature=0.0, seed=1)
                over_http = await backend.generate(req)
                in_process = await local.generate(req)
                assert ([c.text for c in over_http.completions]
                        == [c.text for c in in_process.completions])
                assert ([c.generated_tokens for c in over_http.completions]
                        == [c.generated_tokens for c in in_process.completions])
        finally:
            await backend.close()
            await local.close()
    continued = over_http.completions[0].text
    assert not continued.startswith("1. Red")
    assert continued.strip() and "Red" not in continued.split("\n")[0]


@pytest.mark.model
def test_cli_run_against_the_http_server(server: LlamaCppServer) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "testtime.cli", "run", "--backend", f"openai:{server.url}",
         "--strategy", "self-consistency:n=4,max_tokens=32", "--task", "arith", "--limit", "3",
         "--seed", "0", "--json"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["problems"] == 3 and summary["errors"] == 0 and summary["k"] == 4
    assert 0.0 <= summary["sample_accuracy"] <= summary["pass@4"] <= 1.0
    usage = summary["usage"]
    assert usage["calls"] == 3
    assert 3 * 4 <= usage["generated_tokens"] <= 3 * 4 * 32
    assert usage["counted_by"] == ["engine timings per choice (streamed)"]


@pytest.mark.model
async def test_flops_from_the_servers_model_meta_and_stopped_streams_are_counted(
        server: LlamaCppServer) -> None:
    backend = OpenAIBackend(url=server.url, stream="on")
    assert not backend.cost.known
    await backend.ready()
    shape = backend.cost.shape
    local = read_shape(resolve("smollm2-135m"))
    assert shape is not None and shape.params == pytest.approx(local.params, rel=0.01)
    assert shape.d_model == local.d_model
    ledger = Ledger(cost=backend.cost)
    ledger.record(await backend.generate(GenerationRequest(prompt=PROMPT, max_tokens=8)))
    assert ledger.usage.flops_known and ledger.usage.flops > 2 * local.params * 8

    def decodes() -> float:
        text = httpx.get(server.url.removesuffix("/v1") + "/metrics", timeout=10).text
        return next(float(line.split()[1]) for line in text.splitlines()
                    if line.startswith("llamacpp:n_decode_total"))

    stopped: list[Generation] = []
    before = decodes()
    with on_stopped(stopped.append):
        task = asyncio.ensure_future(backend.generate(GenerationRequest(
            prompt=Prompt.chat("Write a very long essay."), max_tokens=400, temperature=0.0)))
    while decodes() < before + 8:
        await asyncio.sleep(0.05)  # decoding has begun; greedy SmolLM2 writes all 400 tokens
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await backend.close()
    assert len(stopped) == 1 and stopped[0].counted_by == "streamed so far (stopped)"
    assert 0 < stopped[0].generated_tokens < 400
    explicit = OpenAIBackend(url=server.url, params=1e9, layers=4, width=64)
    assert explicit.cost.shape is not None and explicit.cost.shape.params == 1e9
    await explicit.close()


async def test_backends_return_exactly_the_engines_samples_for_a_seed() -> None:
    """For one seed, the OpenAI backend (streamed or not, whole or split into parts or into
    single requests) and the embedded backend (whole or split over few slots) return exactly
    the samples of a plain request to llama.cpp's own server, in the same order.

    The prompt cache is off on both engines so every sample starts from the same state (a cache
    hit evaluates the prompt's tail in a smaller batch, which rounds differently).
    """
    threads = int(os.environ.get("TESTTIME_THREADS", os.cpu_count() or 2))
    prompt = Prompt.chat("Name one animal and describe it in a short sentence.")
    settings: dict[str, Any] = {"slots": 4, "ctx": 512, "threads": threads, "cache": False}
    req = GenerationRequest(prompt=prompt, n=4, max_tokens=20, temperature=1.0, seed=11)
    body = {"messages": [{"role": "user", "content": prompt.messages[0].content}], "n": 4,
            "max_tokens": 20, "temperature": 1.0, "seed": 11, "cache_prompt": False}
    with LlamaCppServer("smollm2-135m", **settings) as srv:
        raw = httpx.post(f"{srv.url}/chat/completions", json=body, timeout=300).json()
        engine = [c["message"]["content"] for c in sorted(raw["choices"],
                                                          key=lambda c: c["index"])]
        assert len(set(engine)) > 1  # real samples, not one greedy text four times
        variants: list[dict[str, Any]] = [
            {"stream": "on"}, {"stream": "off"}, {"max_n": 3}, {"n_mode": "concurrent"}]
        for variant in variants:
            backend = OpenAIBackend(url=srv.url, **variant)
            try:
                got = await backend.generate(req)
            finally:
                await backend.close()
            assert [c.text for c in got.completions] == engine, variant
    for slots in (4, 3):
        local = EmbeddedBackend(model="smollm2-135m", **{**settings, "slots": slots})
        try:
            got = await local.generate(req)
        finally:
            await local.close()
        assert [c.text for c in got.completions] == engine, f"embedded, {slots} slots"
