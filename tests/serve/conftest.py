"""A real gateway on 127.0.0.1 (uvicorn in a thread) for the serve tests."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import uvicorn

from testtime.backends.base import Backend, BackendError, Capabilities
from testtime.backends.scripted import ScriptedBackend
from testtime.serve.app import create_app
from testtime.serve.config import ServeConfig
from testtime.types import Generation, GenerationRequest, Piece


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Running:
    """A gateway served by uvicorn in a background thread."""

    def __init__(self, config: ServeConfig, backend: Backend | None) -> None:
        self.port = free_port()
        self.app = create_app(config.model_copy(update={"port": self.port}), backend)
        self.server = uvicorn.Server(uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning",
            access_log=False, timeout_graceful_shutdown=2))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Running:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("gateway did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        return httpx.post(self.url + path, json=body, **{"timeout": 60, **kwargs})


@contextmanager
def serving(engine: Backend | None = None, **config: Any) -> Iterator[Running]:
    """Run a gateway with ``config`` over ``engine`` (or config's backend spec) meanwhile."""
    server = Running(ServeConfig(**config), engine).start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def upstream_process(backend: str, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """A separate ``testtime serve`` process on ``port`` (an upstream that can be killed)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "testtime.cli", "serve", "--backend", backend,
         "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "TESTTIME_API_KEYS": ""})
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Block until ``url``/health answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"upstream exited with {proc.returncode}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("upstream did not become healthy")


@pytest.fixture(scope="session")
def smollm_gateway(smollm: Backend) -> Iterator[Running]:
    """One gateway over the session's SmolLM2 engine, shared by the real-model tests."""
    with serving(smollm, default_strategy="single:max_tokens=24", max_choices=4,
                 request_timeout=120) as server:
        yield server


@pytest.fixture
def serve() -> Any:
    """The ``serving`` context manager, for tests that need their own gateway."""
    return serving


@pytest.fixture
def upstream() -> Any:
    """The ``upstream_process`` context manager and ``free_port``."""
    return upstream_process, free_port


class WordStream(ScriptedBackend):
    """A scripted engine that also streams its text word by word, optionally failing."""

    def __init__(self, text: str = "one two three four five",
                 fail_after: int | None = None) -> None:
        super().__init__(responder=lambda p, i, r: text)
        self.capabilities = Capabilities(max_n=64, streaming=True)
        self.fail_after = fail_after

    async def stream(self, req: GenerationRequest) -> AsyncIterator[Piece | Generation]:
        """The scripted text word by word (raising at word ``fail_after``), then the whole."""
        gen = await self.generate(req)
        for i, word in enumerate(gen.completions[0].text.split(" ")):
            if self.fail_after is not None and i == self.fail_after:
                raise BackendError("engine died mid-stream")
            await asyncio.sleep(0.01)
            yield Piece(text=word if i == 0 else " " + word)
        yield gen


@pytest.fixture
def word_stream() -> type[WordStream]:
    """The word-by-word streaming scripted engine, to build with its text."""
    return WordStream
