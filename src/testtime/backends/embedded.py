"""The embedded default: llama.cpp in process through xllamacpp, no server, no GPU needed.

Blocking engine calls run in a dedicated thread pool (one thread per slot), so the event loop
never blocks and llama.cpp's continuous batching sees every request at once. Requests stream
internally: each choice's chunks carry the engine's own prompt/cache/generated counts so far,
which are exact per choice even when ``n > 1`` (the non-streamed reply counts one choice only);
a call that is cancelled reports the counts of its last chunks as stopped work.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import Field

from testtime.backends.base import (
    BackendError,
    BackendSettings,
    Capabilities,
    UnsupportedRequest,
    backends,
    join_completions,
    part_request,
    stream_pieces,
)
from testtime.backends.cpuload import ThreadGovernor, initial_threads
from testtime.backends.openai_format import ToolCallDeltas, chat_request, top_dict
from testtime.backends.slot_affinity import SlotAffinity
from testtime.backends.threads import ENGINE_THREADS, cores
from testtime.backends.threads import ENV as THREADS_ENV
from testtime.budget import CostModel, stopped_sink
from testtime.chat import forced_call_format
from testtime.models import DEFAULT_MODEL, read_shape, resolve
from testtime.types import Completion, Generation, GenerationRequest, Piece, Prompt

STOP_GRACE = 5.0  # seconds a cancelled call waits for the engine to stop and count its work


class EmbeddedSettings(BackendSettings):
    """Options of ``embedded:MODEL,slots=…,ctx=…,threads=…,poll=…``."""

    model: str = DEFAULT_MODEL
    slots: int = Field(default=32, ge=1, le=256)
    ctx: int = Field(default=2048, ge=256, description="context tokens per slot")
    threads: int | None = Field(
        default=None, ge=1, description="threads that generate tokens; default: this engine's "
        "share of the process's engine threads (all cores for a lone engine)")
    batch_threads: int | None = Field(
        default=None, ge=1, description="threads that evaluate prompts; default: as threads")
    poll: int = Field(
        default=0, ge=0, le=100, description="how long idle engine threads spin waiting for "
        "work (llama.cpp's poll level, 0-100); 0 sleeps at once and leaves the CPU to other "
        "processes, higher trades a busy core for slightly faster steps on an idle machine")
    batch: int = Field(default=512, ge=32)
    similarity: float = Field(
        default=0.1, ge=0.0, le=1.0, description="llama.cpp's slot_prompt_similarity: a "
        "request goes to the idle slot whose cached tokens share the longest prefix with its "
        "prompt when that covers at least this share of it, else to the least recently used "
        "slot; 0 always takes the least recently used")
    affinity: bool = Field(
        default=True, description="send each call to the idle slot that holds the longest "
        "prefix of its prompt (testtime's own record of what every slot holds); off leaves "
        "the choice to llama.cpp (see similarity)")
    verbosity: int = Field(default=-1, description="llama.cpp log level; -1 keeps it quiet")
    cache: bool = Field(default=True, description="reuse cached prompt prefixes; off makes "
                        "samples independent of what the engine served before")
    unified_kv: bool = Field(
        default=False, description="one KV cache shared by all slots; off gives each slot its "
        "own, so attention reads only that slot's tokens (faster with many slots in flight)")

    positional = "model"


def slot_text(prompt: Prompt) -> str:
    """What a slot holds after serving ``prompt``, as text comparable by common prefix: the
    conversation and its options, then the assistant prefix (a reply appends to it)."""
    head = json.dumps([[m.to_openai() for m in prompt.messages], prompt.options.body()],
                      sort_keys=True)
    return head + "\x00" + prompt.prefix


def engine_error(reply: Any) -> BackendError:
    """The error for an engine's error reply: UnsupportedRequest when llama.cpp refused the
    request itself (HTTP 400: a response-format schema its grammar cannot express...)."""
    err = reply.get("error") if isinstance(reply, dict) else None
    if isinstance(err, dict) and (err.get("code") == 400
                                  or err.get("type") == "invalid_request_error"):
        return UnsupportedRequest(str(err.get("message") or err)[:500])
    return BackendError(f"embedded engine error: {reply}")


def engine_params(settings: EmbeddedSettings, path: Path, threads: int | None = None) -> Any:
    """xllamacpp ``CommonParams`` for a model file with the given settings.

    ``threads`` fills in when the settings leave it unset (default: all cores).
    """
    try:
        import xllamacpp
    except ImportError as exc:
        raise BackendError(
            "the embedded backend needs xllamacpp: pip install 'testtime[embedded]'") from exc
    p = xllamacpp.CommonParams()
    p.model.path = str(path)
    p.n_parallel = settings.slots
    p.n_ctx = settings.slots * settings.ctx
    p.kv_unified = settings.unified_kv
    p.n_batch = settings.batch
    n_threads = settings.threads or threads or cores()
    p.cpuparams.n_threads = n_threads
    p.cpuparams_batch.n_threads = settings.batch_threads or n_threads
    p.cpuparams.poll = settings.poll
    p.cpuparams_batch.poll = settings.poll
    p.cache_prompt = settings.cache
    p.slot_prompt_similarity = settings.similarity
    p.offline = True
    p.verbosity = settings.verbosity
    p.endpoint_metrics = True  # the engine's own counters, to check what a stopped call cost
    return p



def read_metrics(server: Any) -> dict[str, float]:
    """An xllamacpp server's own counters, by name without the ``llamacpp:`` prefix."""
    out: dict[str, float] = {}
    for line in str(server.handle_metrics()).splitlines():
        name, _, value = line.partition(" ")
        if name.startswith("llamacpp:"):
            with contextlib.suppress(ValueError):
                out[name.removeprefix("llamacpp:")] = float(value)
    return out


@dataclass
class Engine:
    """One running llama.cpp engine: its server, what its slots hold, its calls in flight."""

    server: Any
    affinity: SlotAffinity
    calls: int = 0


class ChoiceParts(NamedTuple):
    """What a call's chunks brought, per choice: text pieces, logprobs, top logprobs, tokens,
    tool-call deltas and thinking."""

    texts: list[list[str]]
    logprobs: list[list[float]]
    tops: list[list[dict[str, float]]]
    tokens: list[list[str]]
    calls: list[ToolCallDeltas]
    thinking: list[list[str]]

class SlotGate:
    """Hands out the engine's free slots to requests in FIFO order, never more than are free.

    llama.cpp reserves a slot per sample of an ``n > 1`` request; if several such requests
    hold part of their slots each, they can wait on each other forever. A request is therefore
    only ever given slots that are free now: the first in line takes as many as it needs, or
    all that are free, and asks again for the rest. Each sample's slot comes back as soon as
    that sample finishes (llama.cpp frees it then), so the batch stays full while samples of
    uneven length finish one by one.
    """

    def __init__(self, slots: int) -> None:
        self.free = slots
        self._cond = threading.Condition()
        self._queue: deque[object] = deque()

    def acquire(self, n: int, cancel: threading.Event | None = None) -> int:
        """Block until first in line with a slot free, then take up to ``n`` slots.

        Returns how many were taken: at least one, or none once ``cancel`` is set.
        """
        ticket = object()
        with self._cond:
            self._queue.append(ticket)
            self._cond.wait_for(lambda: (cancel is not None and cancel.is_set())
                                or (self._queue[0] is ticket and self.free > 0))
            self._queue.remove(ticket)
            taken = 0 if cancel is not None and cancel.is_set() else min(n, self.free)
            self.free -= taken
            self._cond.notify_all()
            return taken

    def release(self, n: int) -> None:
        """Return ``n`` slots."""
        with self._cond:
            self.free += n
            self._cond.notify_all()

    def wake(self) -> None:
        """Let waiters re-check their cancel flags."""
        with self._cond:
            self._cond.notify_all()


@backends.register("embedded")
class EmbeddedBackend:
    """llama.cpp in process with continuous batching, n-sampling, logprobs and prompt cache."""

    Settings = EmbeddedSettings

    def __init__(self, settings: EmbeddedSettings | None = None, **kwargs: Any) -> None:
        self.settings = settings or EmbeddedSettings(**kwargs)
        self.name = f"embedded:{self.settings.model}"
        self.capabilities = Capabilities(
            max_n=self.settings.slots, logprobs=True, prefix_cache=self.settings.cache,
            max_parallel=self.settings.slots, streaming=True,
        )
        self.cost = CostModel()
        self._engine: Engine | None = None
        self._draining: list[Engine] = []
        self._drained: dict[str, float] = {}
        self._path: Path | None = None
        self.threads: int | None = None
        self.rebuilds = 0
        self._governor: ThreadGovernor | None = None
        self._start_lock = threading.Lock()
        self._lock = threading.Lock()
        self._gate = SlotGate(self.settings.slots)
        ENGINE_THREADS.join(self, self.settings.threads)
        self._pool = ThreadPoolExecutor(max_workers=self.settings.slots + 2,
                                        thread_name_prefix="testtime-engine")

    @property
    def _pinned(self) -> bool:
        """Whether calls are pinned to slots by affinity (it needs the prompt cache)."""
        return self.settings.cache and self.settings.affinity

    @property
    def governed(self) -> bool:
        """Whether the thread count follows the load (no ``threads`` and no
        ``$TESTTIME_ENGINE_THREADS`` chose it)."""
        return self.settings.threads is None and not os.environ.get(THREADS_ENV, "").strip()

    def thread_share(self) -> int:
        """This engine's share of the process's engine threads on an idle machine."""
        return ENGINE_THREADS.threads_for(self)

    def start(self) -> None:
        """Load the model (pulling its pack if needed). Idempotent and thread-safe.

        A governed engine starts with the threads that the load of the last half second
        leaves free, and a governor re-sizes it while it runs.
        """
        with self._start_lock:
            if self._engine is not None:
                return
            self._path = resolve(self.settings.model)
            self.cost = CostModel(read_shape(self._path))
            share = self.thread_share()
            self._engine = self._build(initial_threads(share) if self.governed else share)
            if self.governed:
                self._governor = ThreadGovernor(self)

    def _build(self, threads: int) -> Engine:
        import xllamacpp
        assert self._path is not None
        params = engine_params(self.settings, self._path, threads)
        self.threads = int(params.cpuparams.n_threads)
        return Engine(xllamacpp.Server(params), SlotAffinity(self.settings.slots))

    def rethread(self, threads: int) -> None:
        """Rebuild the engine with ``threads`` threads (xllamacpp cannot re-size a running
        one): new calls go to the new engine while the old one finishes its calls."""
        if self._engine is None or threads == self.threads:
            return
        fresh = self._build(threads)
        with self._lock:
            old, self._engine = self._engine, fresh
            self.rebuilds += 1
            self._draining.append(old)
            self._retire_idle()

    def _retire_idle(self) -> None:
        """Fold the counters of drained engines into the totals and let them go."""
        for engine in [e for e in self._draining if e.calls == 0]:
            self._draining.remove(engine)
            for name, value in read_metrics(engine.server).items():
                self._drained[name] = self._drained.get(name, 0.0) + value

    async def ready(self) -> None:
        """Load the model in a worker thread."""
        await asyncio.get_running_loop().run_in_executor(self._pool, self.start)

    async def generate(self, req: GenerationRequest) -> Generation:
        """Sample ``req.n`` completions in as many engine calls as free slots allow.

        Each call takes the samples that fit in the slots free at that moment; the next call
        waits for more slots while the earlier ones run. Sample ``i`` is always seeded with
        ``seed + i``, however the request was divided.

        A request that continues an assistant prefix, or says it is ``continued`` (a step of a
        search), may have any of its samples continued next. llama.cpp keeps only the first
        sample's cache of an ``n > 1`` call (the others' slots are cleared when they finish),
        so with slot affinity each such sample runs as its own call and keeps its slot's cache
        for its continuation.
        """
        loop = asyncio.get_running_loop()
        calls: list[asyncio.Task[Generation]] = []
        per_call = 1 if (req.prompt.prefix or req.continued) and self._pinned else req.n
        try:
            placed = 0
            while placed < req.n:
                admitted: asyncio.Future[int] = loop.create_future()
                call = asyncio.create_task(
                    self._call(req, placed, min(per_call, req.n - placed), on_admit=admitted))
                calls.append(call)
                waits: set[asyncio.Future[Any]] = {admitted, call}
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                if not admitted.done():
                    break  # the call failed before it got a slot; gather raises its error
                placed += admitted.result()
            parts = list(await asyncio.gather(*calls))
        except BaseException:
            sink = stopped_sink()
            for task in calls:
                if sink is not None and task.done() and not task.cancelled() \
                        and task.exception() is None:
                    sink(task.result())  # a part that finished is work done all the same
                task.cancel()
            if calls:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait(calls, timeout=STOP_GRACE)  # the rest report their work
            raise
        return parts[0] if len(parts) == 1 else join_completions(parts, "engine-timings")

    def stream(self, req: GenerationRequest) -> AsyncIterator[Piece | Generation]:
        """Yield the pieces of a single completion as they come (text, and the tokens'
        logprobs when asked for), then the Generation. Closing the stream stops the engine;
        what it generated until then is reported as stopped work."""
        def call(emit: Callable[[Piece], None]) -> Awaitable[Generation]:
            return self._call(req, 0, 1, on_piece=lambda index, piece: emit(piece))

        return stream_pieces(call, STOP_GRACE)

    async def _call(self, req: GenerationRequest, offset: int, want: int, *,
                    on_admit: asyncio.Future[int] | None = None,
                    on_piece: Callable[[int, Piece], None] | None = None) -> Generation:
        """Samples ``offset ..`` of ``req``: as many of ``want`` as slots are free for."""
        if self._engine is None:
            await self.ready()
        loop = asyncio.get_running_loop()

        def resolve(n: int) -> None:
            if on_admit is not None and not on_admit.done():
                on_admit.set_result(n)

        def admitted(n: int) -> None:
            loop.call_soon_threadsafe(resolve, n)

        cancel = threading.Event()
        sink = stopped_sink()
        fut = loop.run_in_executor(self._pool, self._blocking_call, req, offset, want, cancel,
                                   admitted, on_piece, sink)
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())  # read, even if shed
        try:
            return await asyncio.shield(fut)
        except asyncio.CancelledError:
            cancel.set()
            self._gate.wake()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({fut}, timeout=STOP_GRACE)  # its count is recorded by then
            if sink is not None and fut.done() and not fut.cancelled() \
                    and fut.exception() is None:
                sink(fut.result())  # it finished just as it was cancelled: still work done
            raise

    def _blocking_call(self, req: GenerationRequest, offset: int, want: int,
                       cancel: threading.Event, admitted: Callable[[int], None],
                       on_piece: Callable[[int, Piece], None] | None,
                       stopped: Callable[[Generation], None] | None = None) -> Generation:
        n = self._gate.acquire(want, cancel)
        admitted(n)
        if n == 0:
            raise asyncio.CancelledError()
        req = part_request(req, offset, n)
        body = chat_request(req.prompt, req, n)
        forced = forced_call_format(req.prompt.options)
        if forced is not None:
            body["response_format"] = forced
        body["stream"] = True
        body["timings_per_token"] = True  # every chunk carries the engine's count so far
        if not self.settings.cache:
            body["cache_prompt"] = False
        with self._lock:
            engine = self._engine
            assert engine is not None
            engine.calls += 1
        held = slot_text(req.prompt) if self._pinned else ""
        slot = engine.affinity.take(held) if self._pinned else -1
        if slot >= 0:
            body["id_slot"] = slot
        texts: list[list[str]] = [[] for _ in range(n)]
        logprobs: list[list[float]] = [[] for _ in range(n)]
        tokens: list[list[str]] = [[] for _ in range(n)]
        tops: list[list[dict[str, float]]] = [[] for _ in range(n)]
        calls = [ToolCallDeltas() for _ in range(n)]
        thinking: list[list[str]] = [[] for _ in range(n)]
        parts = ChoiceParts(texts, logprobs, tops, tokens, calls, thinking)
        finals: dict[int, tuple[str, dict[str, Any]]] = {}
        latest: dict[int, dict[str, Any]] = {}
        errors: list[Any] = []
        started = time.monotonic()

        def on_chunk(chunk: Any) -> bool:
            if not isinstance(chunk, dict) or "error" in chunk:
                errors.append(chunk)
                return True
            for choice in chunk.get("choices", ()):
                i = int(choice.get("index", 0))
                if chunk.get("timings"):
                    latest[i] = chunk["timings"]
                delta = choice.get("delta") or {}
                calls[i].add(delta.get("tool_calls"))
                if delta.get("reasoning_content"):
                    thinking[i].append(delta["reasoning_content"])
                piece = delta.get("content")
                if piece:
                    texts[i].append(piece)
                seen = len(logprobs[i])
                for lp in (choice.get("logprobs") or {}).get("content") or ():
                    logprobs[i].append(float(lp["logprob"]))
                    tokens[i].append(str(lp.get("token", "")))
                    if req.top_logprobs:
                        tops[i].append(top_dict(lp.get("top_logprobs")))
                if on_piece is not None and (piece or len(logprobs[i]) > seen):
                    on_piece(i, Piece(text=piece or "", logprobs=tuple(logprobs[i][seen:]),
                                      top_logprobs=tuple(tops[i][seen:]),
                                      tokens=tuple(tokens[i][seen:])))
                if choice.get("finish_reason") and i not in finals:
                    finals[i] = (choice["finish_reason"], chunk.get("timings") or {})
                    self._gate.release(1)
            return cancel.is_set()

        try:
            reply = {} if cancel.is_set() else engine.server.handle_chat_completions(body,
                                                                                   on_chunk)
        finally:
            self._gate.release(n - len(finals))
            if slot >= 0:
                engine.affinity.give_back(slot, held + "".join(texts[0]).removeprefix(
                    req.prompt.prefix))
            with self._lock:
                engine.calls -= 1
                self._retire_idle()
        if isinstance(reply, dict) and "error" in reply:
            errors.append(reply)
        if errors:
            raise engine_error(errors[0])
        if cancel.is_set():
            if stopped is not None and latest:
                stopped(self._generation(req, n, parts, finals, latest, started,
                                         "engine-timings (stopped)"))
            raise asyncio.CancelledError()
        return self._generation(req, n, parts, finals, latest, started, "engine-timings")

    @staticmethod
    def _generation(req: GenerationRequest, n: int, parts: ChoiceParts,
                    finals: dict[int, tuple[str, dict[str, Any]]],
                    latest: dict[int, dict[str, Any]], started: float,
                    counted_by: str) -> Generation:
        """The Generation of a call, finished or stopped: each choice counted by the engine.

        A choice the engine did not finish (the call was stopped) counts the tokens of its
        last chunk, and its finish reason is ``cancelled``.
        """
        texts, logprobs, tops, tokens, calls, thinking = parts
        completions = []
        for i in range(n):
            reason, timing = finals.get(i, ("cancelled" if latest else "length",
                                            latest.get(i, {})))
            text = "".join(texts[i])
            if req.prompt.prefix and text.startswith(req.prompt.prefix):
                text = text[len(req.prompt.prefix):]
            completions.append(Completion(
                text=text, finish_reason=reason,
                generated_tokens=int(timing.get("predicted_n", len(texts[i]))),
                logprobs=tuple(logprobs[i]) if req.logprobs else None,
                top_logprobs=tuple(tops[i]) if req.top_logprobs else None,
                tokens=tuple(tokens[i]) if req.logprobs else None,
                tool_calls=calls[i].done(),
                reasoning="".join(thinking[i]) or None,
            ))
        first = finals.get(0, ("", latest.get(0) or next(iter(latest.values()), {})))[1]
        cached = int(first.get("cache_n", 0))
        return Generation(
            completions=tuple(completions),
            prompt_tokens=cached + int(first.get("prompt_n", 0)),
            cached_tokens=cached,
            seconds=time.monotonic() - started,
            counted_by=counted_by,
        )

    def engine_metrics(self) -> dict[str, float]:
        """llama.cpp's own counters (``tokens_predicted_total``, ``n_decode_total``, …),
        summed over every engine this backend has run (a re-sized engine is a new one)."""
        with self._lock:
            engines = [e for e in (self._engine, *self._draining) if e is not None]
            out = dict(self._drained)
            for engine in engines:
                for name, value in read_metrics(engine.server).items():
                    out[name] = out.get(name, 0.0) + value
        return out

    async def close(self) -> None:
        """Stop accepting work and free the thread pool (the model is freed with the object)."""
        if self._governor is not None:
            self._governor.stop()
        ENGINE_THREADS.leave(self)
        self._pool.shutdown(wait=False, cancel_futures=True)
