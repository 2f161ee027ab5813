"""llama.cpp's own OpenAI-compatible HTTP server, run from a model pack or GGUF file.

xllamacpp starts the server when ``Server.listening_address`` is read. A process that did so
can hang at exit, so :func:`serve` blocks until SIGTERM/SIGINT and leaves with ``os._exit``,
and :class:`LlamaCppServer` runs it in a child process that it stops by PID. The child also
exits when the process that started it dies (``TESTTIME_EXIT_WITH_PARENT``), so a killed test
run leaves no server behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any, NoReturn

import httpx

from testtime.backends.base import BackendError
from testtime.backends.embedded import EmbeddedSettings, engine_params
from testtime.models import resolve


def serve(settings: EmbeddedSettings, host: str = "127.0.0.1", port: int = 8080,
          on_ready: Any = None) -> NoReturn:
    """Serve ``settings.model`` over HTTP until SIGTERM or SIGINT, then exit the process.

    ``on_ready`` is called with the base URL (``http://host:port/v1``) once the server listens.
    """
    import xllamacpp

    path = resolve(settings.model)
    p = engine_params(settings, path)
    p.hostnames = [host]
    p.port = port
    p.endpoint_metrics = True
    p.model_alias = {Path(settings.model).stem if settings.model.endswith(".gguf")
                     else settings.model}
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        server = xllamacpp.Server(p)
        address = str(server.listening_address).rstrip("/")
    except Exception as exc:
        raise BackendError(f"llama.cpp could not serve {settings.model} on {host}:{port}: "
                           f"{exc}") from exc
    if not address.startswith("http"):
        address = f"http://{address}"
    if on_ready is not None:
        on_ready(f"{address}/v1")
    parent = int(os.environ.get(PARENT_ENV) or 0)
    while not stop.wait(0.5):
        if parent and os.getppid() != parent:
            break
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


PARENT_ENV = "TESTTIME_EXIT_WITH_PARENT"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class LlamaCppServer:
    """Run ``testtime engine-serve`` in a child process on a free port; stop it by PID.

    Use as a context manager::

        with LlamaCppServer("smollm2-135m", slots=4) as server:
            backend = OpenAIBackend(url=server.url)
    """

    def __init__(self, model: str, *, slots: int = 8, ctx: int = 2048,
                 threads: int | None = None, host: str = "127.0.0.1", port: int | None = None,
                 startup_timeout: float = 180.0, **engine: Any) -> None:
        self.settings = EmbeddedSettings(model=model, slots=slots, ctx=ctx, threads=threads,
                                         **engine)
        self.host = host
        self.port = port or free_port(host)
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the OpenAI-compatible API, e.g. ``http://127.0.0.1:PORT/v1``."""
        return f"http://{self.host}:{self.port}/v1"

    def command(self) -> list[str]:
        """The command line that runs the server."""
        s = self.settings
        options = s.model_dump(exclude={"model", "slots", "ctx"}, exclude_defaults=True)
        return [sys.executable, "-m", "testtime.cli", "engine-serve", s.model,
                "--host", self.host, "--port", str(self.port), "--slots", str(s.slots),
                "--ctx", str(s.ctx),
                *(f"--set={k}={str(v).lower() if isinstance(v, bool) else v}"
                  for k, v in options.items())]

    def start(self) -> LlamaCppServer:
        """Start the server and wait until ``/v1/models`` answers."""
        resolve(self.settings.model)
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop)
        env = {**os.environ, PARENT_ENV: str(os.getpid())}
        self.process = subprocess.Popen(self.command(), stdout=self._log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True, env=env)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                log = self.log()
                self.stop()
                raise BackendError(f"llama.cpp server exited with code {code}: {log[-800:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/models", timeout=2.0).status_code == 200:
                    return self
            time.sleep(0.2)
        self.stop()
        raise BackendError(f"llama.cpp server did not answer on {self.url} within "
                           f"{self.startup_timeout:.0f} s")

    def log(self) -> str:
        """What the server printed so far."""
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the server's PID, then SIGKILL it if it has not exited after ``grace`` s."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> LlamaCppServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
