"""The Strategy protocol, its registry and the Context every strategy spends through.

Everything incidental (request splitting, token accounting, budget checks, answer extraction,
verifier calls) lives in the Context, once, so each strategy file holds only its idea. Every
Context is opened by :func:`open_context`, which reads what the strategy declares (its
verifier, its sampler settings); callers (the runner, the gateway) never set those by hand.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from abc import abstractmethod
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Protocol, runtime_checkable

from pydantic import ConfigDict, Field, PrivateAttr

from testtime.answers import extract_answer
from testtime.backends.base import Backend
from testtime.budget import Budget, Ledger
from testtime.chat import canonical_calls, parse_tool_calls, split_reasoning
from testtime.code.extract import extract_code
from testtime.code.programs import ProgramRun, run_program
from testtime.code.sandbox import Limits, Mode
from testtime.metered import metered_generate, metered_stream
from testtime.policy.pools import Pool
from testtime.registry import Nested, Registry, SpecError, build
from testtime.tools.base import Tool, ToolResult
from testtime.tools.registry import tools as known_tools
from testtime.traces import Finisher, Trace, Watcher, run_traces
from testtime.types import (
    Candidate,
    Generation,
    GenerationRequest,
    Problem,
    Prompt,
    Result,
    Sampling,
    Score,
)
from testtime.verifiers.base import Verifier, VerifyContext
from testtime.verifiers.make import make_verifier


def derive_seed(*parts: object) -> int:
    """A reproducible 31-bit seed hashed from ``parts`` (e.g. a run's seed and a problem id)."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


@dataclass
class Context:
    """A strategy's view of the world for one problem: engine, verifier, budget, ledger, rng.

    ``sampling`` holds the strategy's sampler settings (unset ones keep the engine's defaults);
    ``request`` holds what the caller asks of every generation (``stop`` strings added to the
    strategy's own, ``logprobs``, ``top_logprobs``); ``on_sample`` is told of each
    batch of candidates as it is sampled (the gateway streams progress from it).
    ``offer`` leaves already-paid samples for whatever strategy samples the same prompt next.
    ``strategy`` is the strategy the Context was opened for; ``spec`` is how results name it.
    ``tools`` are the tools its strategy may call (default: every registered tool; the
    gateway's: those its operator enabled).
    """

    backend: Backend
    verifier: Verifier | None = None
    budget: Budget = field(default_factory=Budget)
    seed: int = 0
    spec: str = ""
    strategy: Strategy | None = None
    sampling: Sampling = field(default_factory=Sampling)
    ledger: Ledger = field(init=False)
    rng: random.Random = field(init=False)
    trace: list[dict[str, Any]] = field(default_factory=list)
    request: dict[str, Any] = field(default_factory=dict)
    on_sample: Callable[[Sequence[Candidate]], None] | None = None
    offered: list[tuple[GenerationRequest, str, list[Candidate]]] = field(default_factory=list)
    tools: Mapping[str, Tool] = field(default_factory=known_tools.all)

    def __post_init__(self) -> None:
        self.ledger = Ledger(budget=self.budget, cost=self.backend.cost)
        self.rng = random.Random(self.seed)
        self._calls = 0

    @property
    def exhausted(self) -> bool:
        """Whether a limit was met: a call was refused or shrunk, or the deadline passed."""
        if not self.ledger.exhausted and self.ledger.seconds_left() == 0.0:
            self.ledger.meet("seconds")
        return self.ledger.exhausted

    def next_seed(self) -> int:
        """A fresh, reproducible sampling seed for the next call.

        Engines seed the i-th sample of an ``n``-sample call with ``seed + i`` (llama.cpp, and
        the OpenAI backend's fallback), so consecutive seeds would repeat samples across calls;
        hashing spreads calls far apart in the seed space instead.
        """
        self._calls += 1
        return derive_seed(self.seed, self._calls)

    async def generate(self, req: GenerationRequest) -> Generation:
        """Run one budget-planned backend call and record what it cost.

        The request is shrunk (fewer samples, fewer tokens) to fit the budget; when nothing
        fits, or the ``seconds`` deadline passes while it runs, an empty (or partial)
        Generation is returned and ``exhausted`` is set.
        """
        return await metered_generate(self.ledger, self.backend, self.prepare(req))

    async def judge(self, req: GenerationRequest) -> Generation:
        """Run a call made to choose among candidates, not to answer (universal
        self-consistency): billed as verifier compute and sent as ``req`` asks (with a fresh
        seed if it has none), without the strategy's sampler settings or the caller's options."""
        if req.seed is None:
            req = req.model_copy(update={"seed": self.next_seed()})
        return await metered_generate(self.ledger, self.backend, req, verifier=True)

    async def stream(self, problem: Problem, *, temperature: float, max_tokens: int
                     ) -> AsyncGenerator[str | list[Candidate], None]:
        """Sample ``problem`` once as a stream: its text pieces as they arrive, then its
        candidates (none when the budget refused the call). Closing the stream stops the
        engine's work on it."""
        prompt = problem.prompt()
        req = self.prepare(GenerationRequest(prompt=prompt, n=1, temperature=temperature,
                                             max_tokens=max_tokens))
        async with aclosing(metered_stream(self.ledger, self.backend, req)) as pieces:
            async for item in pieces:
                if isinstance(item, Generation):
                    yield [self.candidate(prompt, c) for c in item.completions]
                    return
                if item.text:
                    yield item.text

    async def execute(self, programs: Sequence[str], limits: Limits, mode: Mode = "auto",
                      parallel: int = 4) -> list[ProgramRun]:
        """Run model-written ``programs`` in the code sandbox (``parallel`` at once, off the
        event loop) and bill their runs and wall seconds to the ledger, each as it ends (a run
        cancelled part way is billed the seconds it had run). A program that fails (raises,
        loops, floods its output, crashes) gives a failed run, never an error."""
        gate = asyncio.Semaphore(max(1, parallel))

        async def one(source: str) -> ProgramRun:
            async with gate:
                started = time.monotonic()
                try:
                    run = await asyncio.to_thread(run_program, source, limits, mode)
                except asyncio.CancelledError:
                    self.ledger.record_sandbox(1, time.monotonic() - started)
                    raise
                self.ledger.record_sandbox(1, run.seconds)
                return run

        return list(await asyncio.gather(*(one(p) for p in programs)))

    async def call_tool(self, name: str, arguments: Mapping[str, Any] | str) -> ToolResult:
        """Call the tool ``name`` offered to this run with ``arguments`` (a mapping or its
        JSON text) and bill the call to the ledger (``tool_runs``, ``tool_seconds``). An
        unknown tool, bad arguments or a tool's exception is a failed result, never an error."""
        tool = self.tools.get(name)
        if tool is None:
            offered = ", ".join(sorted(self.tools)) or "none"
            return ToolResult.error(f"there is no tool {name!r}; tools: {offered}")
        started = time.monotonic()
        result = await tool.call(arguments, self)
        self.ledger.record_tool(1, time.monotonic() - started)
        return result

    async def delegate(self, strategy: Strategy, problem: Problem) -> Result:
        """Run ``strategy`` on this Context (same ledger, seeds, offers and caller options),
        scoring with the verifier it declares, as a policy's choice runs after its probe."""
        outer = self.verifier
        self.verifier = verifier_for(strategy, outer)
        try:
            return await strategy.run(problem, self)
        finally:
            self.verifier = outer

    def prepare(self, req: GenerationRequest) -> GenerationRequest:
        """``req`` as it is sent: with a fresh seed if it has none, the strategy's sampler
        settings where it leaves them unset, and the caller's options (``request``)."""
        update: dict[str, Any] = {k: v for k, v in self.sampling.chosen().items()
                                  if getattr(req, k) is None}
        if req.seed is None:
            update["seed"] = self.next_seed()
        if update:
            req = req.model_copy(update=update)
        return self.with_request(req) if self.request else req

    def with_request(self, req: GenerationRequest) -> GenerationRequest:
        """``req`` with the caller's options applied: its stop strings added to req's, its
        logprobs asked for on top of what req asks (never fewer top logprobs than req's)."""
        update = {k: v for k, v in self.request.items() if k != "stop"}
        if "logprobs" in update:
            update["logprobs"] = bool(update["logprobs"] or req.logprobs)
        if "top_logprobs" in update:
            update["top_logprobs"] = max(int(update["top_logprobs"] or 0), req.top_logprobs)
        stops = tuple(self.request.get("stop", ()))
        if stops:
            update["stop"] = req.stop + tuple(s for s in stops if s not in req.stop)
        return req.model_copy(update=update)

    async def sample(self, prompt: Problem | Prompt, n: int, *, temperature: float = 0.8,
                     max_tokens: int = 512, stop: Sequence[str] = (),
                     logprobs: bool | None = None, top_logprobs: int = 0,
                     continued: bool = False, kind: str | None = None) -> list[Candidate]:
        """Sample ``n`` full or continued solutions and extract their answers
        (``continued``: the caller may continue any of them, as a search does; ``kind``: the
        problem kind of a bare Prompt, math unless given)."""
        p = prompt.prompt() if isinstance(prompt, Problem) else prompt
        want_lp = logprobs if logprobs is not None else bool(
            self.verifier is not None and self.verifier.needs_logprobs)
        req = GenerationRequest(prompt=p, n=n, temperature=temperature, max_tokens=max_tokens,
                                stop=tuple(stop), logprobs=want_lp or top_logprobs > 0,
                                top_logprobs=top_logprobs, continued=continued)
        reused = self.take_offered(req)
        if len(reused) == n:
            return reused
        gen = await self.generate(req.model_copy(update={"n": n - len(reused)}))
        kind = prompt.kind if isinstance(prompt, Problem) else kind or "math"
        out = [self.candidate(p, c, kind) for c in gen.completions]
        if self.on_sample is not None and out:
            self.on_sample(out)
        return reused + out

    def offer(self, prompt: Problem | Prompt, candidates: Sequence[Candidate], *,
              temperature: float, max_tokens: int, stop: Sequence[str] = (),
              logprobs: bool = False, top_logprobs: int = 0, drawn_as: str = "") -> None:
        """Let the next ``sample`` of the same prompt and settings reuse ``candidates``.

        A probe's samples are already paid for; a strategy run after it on the same Context
        gets them first and samples only the rest. ``drawn_as`` names samples that are not one
        call's completions (a tool-integrated trace is several calls and sandbox runs): only a
        ``take_offered`` naming the same reuses them, never a plain ``sample``.
        """
        p = prompt.prompt() if isinstance(prompt, Problem) else prompt
        req = GenerationRequest(prompt=p, n=len(candidates), temperature=temperature,
                                max_tokens=max_tokens, stop=tuple(stop), logprobs=logprobs,
                                top_logprobs=top_logprobs)
        self.offered.append((req, drawn_as, list(candidates)))

    def take_offered(self, req: GenerationRequest, drawn_as: str = "") -> list[Candidate]:
        """Up to ``req.n`` offered candidates sampled exactly as ``req`` asks (and drawn as
        ``drawn_as`` names), removed."""
        out: list[Candidate] = []
        for have, kind, cands in self.offered:
            if (kind == drawn_as and have.prompt == req.prompt
                    and have.temperature == req.temperature
                    and have.max_tokens == req.max_tokens and have.stop == req.stop
                    and (have.logprobs or not req.logprobs)
                    and have.top_logprobs >= req.top_logprobs):
                take = cands[:req.n - len(out)]
                del cands[:len(take)]
                out += take
        self.offered = [(r, k, c) for r, k, c in self.offered if c]
        return out

    async def traces(self, prompt: Problem | Prompt, n: int, *, watch: Watcher | None = None,
                     on_finish: Finisher | None = None, temperature: float = 0.8,
                     max_tokens: int = 512, stop: Sequence[str] = (),
                     top_logprobs: int = 0, kind: str | None = None) -> list[Trace]:
        """Run ``n`` samples as streams under ``watch`` (online trace control).

        ``watch(trace, piece)`` (sync or async) is called after every piece a trace streams
        and may call ``stop()`` on any trace; a stopped trace's engine work ends there and is
        billed exactly, as a stopped trace (see :mod:`testtime.traces`). ``on_finish(trace,
        completion)`` is called as each trace ends by itself, while the others still run.
        Sample ``i`` is seeded like the ``i``-th sample of one ``n``-sample call. Each trace's
        ``candidate`` holds its solution (finish reason ``stopped`` when it was stopped); it is
        None for a trace the budget refused. ``kind``: the problem kind of a bare Prompt, math
        unless given.
        """
        p = prompt.prompt() if isinstance(prompt, Problem) else prompt
        kind = prompt.kind if isinstance(prompt, Problem) else kind or "math"
        req = self.prepare(GenerationRequest(
            prompt=p, n=1, temperature=temperature, max_tokens=max_tokens, stop=tuple(stop),
            logprobs=True, top_logprobs=top_logprobs))
        traces = [Trace(index=i) for i in range(n)]
        deadline = asyncio.timeout(self.ledger.seconds_left())
        try:
            async with deadline:
                done = await run_traces(self.ledger, self.backend, req, traces, watch, on_finish)
        except TimeoutError:
            if not deadline.expired():
                raise
            self.ledger.meet("seconds")
            return traces
        for trace, completion in zip(traces, done, strict=True):
            if completion is not None:
                trace.candidate = self.candidate(p, completion, kind)
        got = [t.candidate for t in traces if t.candidate is not None]
        if self.on_sample is not None and got:
            self.on_sample(got)
        return traces

    @staticmethod
    def candidate(prompt: Prompt, completion: Any, kind: str = "math") -> Candidate:
        """A Candidate for a completion of ``prompt`` (the prefix counts as part of the text).

        A completion that calls tools (parsed by the engine, or read from its text when the
        request declared tools) answers with the calls' canonical form. Otherwise a code
        problem's answer is its extracted code, a free-text problem's only an answer the text
        marks as final, and a math problem's the final answer; thinking (``<think>…</think>``)
        never counts as the answer. A sample cut off by ``max_tokens`` answers only what it
        marked as its answer (boxed, ``####``, "the answer is"): the last number of a cut
        text is a step, not a result.
        """
        text = prompt.prefix + completion.text
        calls = completion.tool_calls or parse_tool_calls(completion.text, prompt.options)
        if calls:
            if not completion.tool_calls:
                completion = completion.model_copy(update={"tool_calls": calls})
            return Candidate(text=text, answer=canonical_calls(calls), completion=completion)
        reply = split_reasoning(text)[1] or text
        answer: str | None
        if kind == "code":
            answer = extract_code(reply)
        else:
            cut = completion.finish_reason == "length"
            answer = extract_answer(reply, marked_only=kind == "text" or cut)
        return Candidate(text=text, answer=answer, completion=completion)

    async def score(self, problem: Problem, candidates: Sequence[Candidate],
                    verifier: Verifier | None = None) -> list[Candidate]:
        """Score candidates with ``verifier`` (default: the context's) and attach the scores."""
        v = verifier or self.verifier
        if v is None:
            raise ValueError("this strategy needs a verifier; pass --verifier or verifier=NAME")
        if not candidates:
            return []
        scores: list[Score] = await v.score(problem, candidates,
                                            VerifyContext(backend=self.backend, ledger=self.ledger))
        return [c.with_score(s) for c, s in zip(candidates, scores, strict=True)]

    def result(self, problem: Problem, answer: str | None, candidates: Sequence[Candidate],
               *, text: str | None = None, votes: dict[str, float] | None = None,
               **extra: Any) -> Result:
        """Close the ledger and package the answer with its evidence and cost."""
        if text is None:
            text = next((c.text for c in candidates if c.answer == answer), None)
        if self.trace:
            extra.setdefault("trace", self.trace)
        extra.setdefault("sampling", self.sampling.chosen())
        return Result(problem_id=problem.id, answer=answer, text=text,
                      candidates=tuple(candidates), usage=self.ledger.close(),
                      strategy=self.spec, budget_exhausted=self.ledger.exhausted,
                      budget_limit=self.ledger.limit,
                      votes=votes or {}, extra=extra)


@runtime_checkable
class Strategy(Protocol):
    """Turns a problem and a Context into a Result."""

    async def run(self, problem: Problem, ctx: Context) -> Result:
        """Solve ``problem`` spending only through ``ctx``."""
        ...


class StrategySettings(Sampling):
    """Base for strategies: their options are validated, immutable pydantic fields.

    Every strategy takes the sampler settings of :class:`Sampling` (``top_p``, ``top_k``,
    ``min_p``, ``repeat_penalty``) in its spec; the runner hands them to the Context, which
    applies them to every call the strategy makes.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    registered_name: ClassVar[str]
    uses_verifier: ClassVar[bool] = False
    """It scores candidates, with its own verifier, else the caller's, else the default."""
    default_verifier: ClassVar[str | None] = None
    """The verifier spec it scores with when neither its spec nor the caller names one."""
    whole_replies: ClassVar[bool] = False
    """Every sample it takes is a whole reply to the conversation (not a step, a revision or
    a forced ending), so a request's stop strings, logprobs, tools and response format apply."""
    streams_tokens: ClassVar[bool] = False
    """Its :meth:`stream` yields the reply's text as it is generated (not only the Result)."""
    pool: ClassVar[Pool | None] = None
    """The pool of draws its k-sample runs are scored from, when it pools (see policy)."""
    runs_code: ClassVar[bool] = False
    """It runs model-written code in the sandbox, so a request may choose it only where the
    operator lists it in the gateway's ``allowed_strategies``."""
    draws_samples: ClassVar[bool] = False
    """Its :meth:`draw` is one independent sample of a kind of its own (a plain reply, a
    no-thinking answer, a program, a tool-integrated trace), so strategies that take a
    ``samples=SPEC`` option may take their samples from it."""

    temperature: float = Field(default=0.8, ge=0.0, le=2.0)
    max_tokens: int = Field(default=512, ge=1, le=131072)
    verifier: Annotated[str | None, Nested("verifier")] = Field(
        default=None, description="verifier spec; default: --verifier")
    _verifier: Verifier | None = PrivateAttr(default=None)

    def model_post_init(self, __context: object) -> None:
        """Build the strategy's own verifier now, so a bad verifier spec fails before any work."""
        if self.verifier:
            self._verifier = make_verifier(self.verifier)

    @property
    def own_verifier(self) -> Verifier | None:
        """The verifier its own ``verifier`` spec names (built with it), if any."""
        return self._verifier

    def samples_whole_replies(self) -> bool:
        """Whether every sample this strategy takes is a whole reply: its class declaration."""
        return self.whole_replies

    def wants_tools(self) -> tuple[str, ...]:
        """The tools it names in its options, which its Context must offer: none."""
        return ()

    def verifier_for(self, given: Verifier | None) -> Verifier | None:
        """The verifier a Context opened for this strategy scores with: its own (if it uses
        one), else ``given`` (the caller's), else its declared default."""
        if self.uses_verifier and self._verifier is not None:
            return self._verifier
        if given is not None or self.default_verifier is None:
            return given
        return make_verifier(self.default_verifier, cache=False)

    @abstractmethod
    async def run(self, problem: Problem, ctx: Context) -> Result:
        """Solve ``problem`` spending only through ``ctx``."""

    async def stream(self, problem: Problem, ctx: Context) -> AsyncGenerator[str | Result, None]:
        """The Result of :meth:`run`, as a stream; a strategy that ``streams_tokens`` yields
        its reply's text pieces first."""
        yield await self.run(problem, ctx)

    def check(self) -> None:
        """Raise if the strategy cannot run as configured (a file it reads is missing); the
        gateway calls it at startup on the operator's strategies."""

    def draw_prompt(self, problem: Problem) -> Prompt:
        """The prompt :meth:`draw` samples: the problem's own."""
        return problem.prompt()

    @property
    def draw_stop(self) -> tuple[str, ...]:
        """Stop strings of :meth:`draw`: none of its own."""
        return ()

    async def draw(self, problem: Problem, ctx: Context, n: int, *, top_logprobs: int = 0,
                   watch: Watcher | None = None) -> list[Candidate]:
        """``n`` independent samples of ``problem`` as this strategy's sampler draws them: what
        a sampling pool is made of, and how a difficulty probe samples.

        ``top_logprobs``: the samples carry their generated tokens' logprobs and that many
        alternatives each (a confidence filter reads them). ``watch``: the samples are
        streamed as traces under it (see :meth:`Context.traces`); one it stopped ends with
        finish reason ``stopped``, and those the budget refused are left out.
        """
        prompt = self.draw_prompt(problem)
        if watch is not None:
            traces = await ctx.traces(prompt, n, watch=watch, temperature=self.temperature,
                                      max_tokens=self.max_tokens, stop=self.draw_stop,
                                      top_logprobs=top_logprobs, kind=problem.kind)
            return [t.candidate for t in traces if t.candidate is not None]
        return await ctx.sample(prompt, n, temperature=self.temperature,
                                max_tokens=self.max_tokens, stop=self.draw_stop,
                                top_logprobs=top_logprobs, kind=problem.kind)

    def pooled(self) -> Pool | None:
        """The pool its k-sample runs are scored from as configured: its class's ``pool``."""
        return self.pool

    def offer_drawn(self, problem: Problem, ctx: Context, candidates: Sequence[Candidate]
                    ) -> None:
        """Leave ``candidates`` (from :meth:`draw`) for the next strategy on ``ctx`` that
        samples exactly alike, which then samples only the rest."""
        ctx.offer(self.draw_prompt(problem), candidates, temperature=self.temperature,
                  max_tokens=self.max_tokens, stop=self.draw_stop,
                  logprobs=bool(ctx.verifier is not None and ctx.verifier.needs_logprobs))


strategies: Registry[Any] = Registry("strategy")


def make_strategy(spec: str) -> Any:
    """Build a strategy from a spec such as ``self-consistency:n=16,temperature=0.7``."""
    return build(strategies, spec)


def verifier_for(strategy: Strategy, given: Verifier | None) -> Verifier | None:
    """The verifier ``strategy`` declares it scores with, ``given`` the caller's."""
    declared = getattr(strategy, "verifier_for", None)
    return declared(given) if callable(declared) else given


def open_context(strategy: Strategy, backend: Backend, *, spec: str = "",
                 verifier: Verifier | None = None, budget: Budget | None = None, seed: int = 0,
                 request: dict[str, Any] | None = None,
                 on_sample: Callable[[Sequence[Candidate]], None] | None = None,
                 tools: Mapping[str, Tool] | None = None) -> Context:
    """The Context ``strategy`` runs one problem in: the one place a Context is built.

    ``verifier`` is the caller's (``--verifier``); the strategy's declarations decide what it
    scores with. Its sampler settings go to every call it makes; ``request`` holds what the
    caller asks of every generation. ``tools`` are the tools it may call (default: every
    registered one); a SpecError names a tool the strategy wants that they do not hold.
    """
    offered = dict(known_tools.all() if tools is None else tools)
    wants = getattr(strategy, "wants_tools", None)
    missing = sorted(set(wants() if callable(wants) else ()) - set(offered))
    if missing:
        raise SpecError(f"tool(s) {', '.join(missing)} are not offered here; tools: "
                        f"{', '.join(sorted(offered)) or 'none'}")
    return Context(backend=backend, verifier=verifier_for(strategy, verifier),
                   budget=budget or Budget(), seed=seed, spec=spec, strategy=strategy,
                   sampling=Sampling.of(strategy), request=dict(request or {}),
                   on_sample=on_sample, tools=offered)
