"""Immutable data shared by every layer: problems, prompts, requests, completions, results."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["system", "user", "assistant", "tool"]


class Frozen(BaseModel):
    """Base for immutable, JSON-serialisable records."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ToolCall(Frozen):
    """A function call made by an assistant turn: the tool's name and its JSON arguments."""

    id: str = ""
    name: str
    arguments: str = "{}"


class Message(Frozen):
    """One chat message; assistant turns may carry tool calls, tool turns answer one by id."""

    role: Role
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None

    def to_openai(self) -> dict[str, Any]:
        """The message as an OpenAI-style chat message (what chat templates render)."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [
                {"id": c.id, "type": "function",
                 "function": {"name": c.name, "arguments": c.arguments}}
                for c in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            out["name"] = self.name
        return out


class ChatOptions(Frozen):
    """What a chat request asks of every generation besides messages: the tools the model may
    call and the shape its reply must take. Rendered by the backend with the prompt."""

    tools: tuple[dict[str, Any], ...] = ()
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None

    def body(self) -> dict[str, Any]:
        """These options as fields of an OpenAI chat completions body."""
        out: dict[str, Any] = {}
        if self.tools:
            out["tools"] = [dict(t) for t in self.tools]
        if self.tool_choice is not None:
            out["tool_choice"] = self.tool_choice
        if self.parallel_tool_calls is not None:
            out["parallel_tool_calls"] = self.parallel_tool_calls
        if self.response_format is not None:
            out["response_format"] = self.response_format
        return out


class Prompt(Frozen):
    """Chat messages plus an optional assistant prefix that generation must continue.

    Keeping ``prefix`` separate lets tree search extend a partial solution on any backend while
    the rendered bytes of earlier steps stay identical, so prefix caches hit.
    """

    messages: tuple[Message, ...]
    prefix: str = ""
    options: ChatOptions = ChatOptions()

    def extend(self, text: str) -> Prompt:
        """Return the prompt whose assistant prefix is this one's plus ``text``."""
        return self.model_copy(update={"prefix": self.prefix + text})

    @classmethod
    def chat(cls, user: str, system: str | None = None) -> Prompt:
        """Build a prompt from a user message and an optional system message."""
        msgs = [Message(role="system", content=system)] if system else []
        msgs.append(Message(role="user", content=user))
        return cls(messages=tuple(msgs))


class Problem(Frozen):
    """A question to answer, with its reference answer when known (for evaluation only)."""

    id: str
    question: str
    reference: str | None = None
    kind: Literal["math", "code", "text"] = "math"
    system: str | None = None
    instruction: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    messages: tuple[Message, ...] = Field(
        default=(), description="the whole chat, when the problem is a conversation; "
        "`question` is then its last user message")
    options: ChatOptions = ChatOptions()

    def prompt(self) -> Prompt:
        """The chat prompt a policy model sees for this problem."""
        if self.messages:
            messages = self.messages
            last = max((i for i, m in enumerate(messages) if m.role == "user"), default=None)
            if self.instruction and last is not None:
                turn = messages[last].model_copy(
                    update={"content": f"{messages[last].content}\n\n{self.instruction}"})
                messages = (*messages[:last], turn, *messages[last + 1:])
            return Prompt(messages=messages, options=self.options)
        user = self.question if not self.instruction else f"{self.question}\n\n{self.instruction}"
        return Prompt.chat(user, system=self.system).model_copy(update={"options": self.options})


class Sampling(Frozen):
    """Sampler settings beyond temperature; each one left unset keeps the engine's default.

    Engines ship tuned defaults (llama.cpp: ``top_k`` 40, ``top_p`` 0.95, ``min_p`` 0.05), so
    testtime sends only what the user chose. Strategy specs, gateway requests and backend
    requests all carry these same fields.
    """

    top_p: float | None = Field(default=None, gt=0.0, le=1.0,
                                description="nucleus sampling; unset: the engine's default")
    top_k: int | None = Field(default=None, ge=0,
                              description="keep the k likeliest tokens (0: all); unset: "
                                          "the engine's default")
    min_p: float | None = Field(default=None, ge=0.0, le=1.0,
                                description="drop tokens below min_p x the likeliest one's "
                                            "probability; unset: the engine's default")
    repeat_penalty: float | None = Field(default=None, gt=0.0, le=10.0,
                                         description="penalty on repeated tokens (1: none); "
                                                     "unset: the engine's default")

    def chosen(self) -> dict[str, float]:
        """The settings that were set, by name (empty: every engine default stands)."""
        return {k: getattr(self, k) for k in Sampling.model_fields
                if getattr(self, k) is not None}

    @staticmethod
    def of(source: object) -> Sampling:
        """The sampler settings of any object that has these fields (a strategy, a request)."""
        return Sampling(**{k: getattr(source, k, None) for k in Sampling.model_fields})


class GenerationRequest(Sampling):
    """One call to a backend: sample ``n`` continuations of ``prompt``."""

    prompt: Prompt
    n: int = Field(default=1, ge=1)
    max_tokens: int = Field(default=512, ge=1)
    temperature: float = Field(default=0.8, ge=0.0)
    seed: int | None = None
    stop: tuple[str, ...] = ()
    logprobs: bool = False
    top_logprobs: int = Field(default=0, ge=0, le=20,
                              description="alternatives per token (implies logprobs)")
    continued: bool = Field(default=False, description="the caller may continue any of the "
                            "samples (a step of a search): keep every sample's prompt cache")


class Completion(Frozen):
    """One sampled continuation with the engine's own count of what it cost."""

    text: str
    finish_reason: str = "stop"
    generated_tokens: int = 0
    logprobs: tuple[float, ...] | None = None
    top_logprobs: tuple[dict[str, float], ...] | None = None
    tokens: tuple[str, ...] | None = Field(default=None, description="the sampled tokens' "
                                           "text, aligned with `logprobs` when the engine says")
    tool_calls: tuple[ToolCall, ...] = ()
    reasoning: str | None = Field(default=None, description="thinking the engine split out "
                                  "of the text itself (llama.cpp's reasoning_content)")


class Piece(Frozen):
    """A piece of one completion as the engine streams it: its text and, when asked for,
    the logprobs, top logprobs and text of the tokens it holds."""

    text: str = ""
    logprobs: tuple[float, ...] = ()
    top_logprobs: tuple[dict[str, float], ...] = ()
    tokens: tuple[str, ...] = ()


class Generation(Frozen):
    """What one backend call returned: the completions and the call's token counts.

    ``counted_by`` says how the counts were obtained (engine timings per choice, the server's
    usage field, a local estimate), because servers disagree on what they report.
    """

    completions: tuple[Completion, ...]
    prompt_tokens: int = 0
    cached_tokens: int = 0
    seconds: float = 0.0
    counted_by: str = "engine"

    @property
    def generated_tokens(self) -> int:
        """Sum of generated tokens over all completions."""
        return sum(c.generated_tokens for c in self.completions)


class Score(Frozen):
    """A verifier's judgement in [0, 1]; process verifiers also give one value per step."""

    value: float
    steps: tuple[float, ...] | None = None
    detail: str | None = None


class Candidate(Frozen):
    """A full solution proposed for a problem, with its extracted answer and scores."""

    text: str
    answer: str | None
    completion: Completion
    score: Score | None = None

    @property
    def has_answer(self) -> bool:
        """Whether an answer could be extracted from the text."""
        return self.answer is not None

    def with_score(self, score: Score) -> Candidate:
        """Return a copy carrying ``score``."""
        return self.model_copy(update={"score": score})


class Usage(Frozen):
    """Everything one problem (or a whole run) cost, in one unit for every strategy.

    Policy and verifier work are kept apart: ``prompt_tokens``/``generated_tokens``/``calls``
    are the policy model's; ``verifier_*`` are the judges' and reward models' (a reward
    model's forward pass counts its input as verifier prompt tokens). ``verifier_tokens`` is
    the verifiers' prompt plus generated tokens. ``flops`` covers both, ``verifier_flops`` the
    verifiers' share; ``flops_known`` is False when some call's model shape was unknown, so
    ``flops`` is then a lower bound. ``verifier_calls`` counts judge calls and reward-model
    passes, ``verifier_passes`` the passes alone. ``cut_calls`` counts calls stopped before
    they finished (cancelled, timed out, abandoned); their tokens up to the stop are included.
    ``nfes`` counts a diffusion model's denoiser forward passes (one per sample per
    evaluation; a batched call of 8 samples is 8 NFEs and 1 call), ``denoiser_seconds`` their
    wall time.
    ``tool_runs`` counts the tool calls a strategy made (every call of a tool that exists,
    its arguments valid or not; a ``python`` call is also a sandbox run, so ``sandbox_runs``
    still counts every program run in the sandbox), ``tool_seconds`` their wall time.
    ``stopped_traces`` counts the streamed traces among them that their consumer stopped on
    purpose (a strategy that lost confidence in a trace, a client that closed its stream) and
    ``stopped_tokens`` the tokens those traces had generated (part of ``generated_tokens``).
    """

    prompt_tokens: int = 0
    cached_tokens: int = 0
    generated_tokens: int = 0
    verifier_tokens: int = 0
    verifier_prompt_tokens: int = 0
    verifier_generated_tokens: int = 0
    calls: int = 0
    verifier_calls: int = 0
    verifier_passes: int = 0
    verifier_seconds: float = 0.0
    sandbox_runs: int = 0
    sandbox_seconds: float = 0.0
    tool_runs: int = 0
    tool_seconds: float = 0.0
    verifier_flops: float = 0.0
    cut_calls: int = 0
    stopped_traces: int = 0
    stopped_tokens: int = 0
    seconds: float = 0.0
    flops: float = 0.0
    flops_known: bool = True
    memory_bytes: float = 0.0
    nfes: int = 0
    denoiser_seconds: float = 0.0
    counted_by: tuple[str, ...] = ()

    @property
    def sandbox_seconds_per_run(self) -> float:
        """Mean sandbox seconds per candidate run (0 when no code ran)."""
        return self.sandbox_seconds / self.sandbox_runs if self.sandbox_runs else 0.0

    @property
    def total_tokens(self) -> int:
        """Prompt, generated and verifier tokens together."""
        return self.prompt_tokens + self.generated_tokens + self.verifier_tokens

    def __add__(self, other: Usage) -> Usage:
        summed: dict[str, Any] = {
            name: getattr(self, name) + getattr(other, name)
            for name in _SUMMED
        }
        return Usage(**summed, flops_known=self.flops_known and other.flops_known,
                     counted_by=tuple(sorted(set(self.counted_by) | set(other.counted_by))))

    @staticmethod
    def total(items: Sequence[Usage]) -> Usage:
        """Sum a sequence of usages."""
        out = Usage()
        for u in items:
            out = out + u
        return out


_SUMMED = tuple(name for name in Usage.model_fields if name not in ("flops_known", "counted_by"))


class Result(Frozen):
    """What a strategy returns for one problem: the answer, the evidence and the cost."""

    problem_id: str
    answer: str | None
    text: str | None = None
    candidates: tuple[Candidate, ...] = ()
    usage: Usage = Usage()
    strategy: str = ""
    budget_exhausted: bool = False
    budget_limit: str | None = Field(
        default=None, description="the limit that was met: generated_tokens, total_tokens, "
        "verifier_tokens, calls, seconds or flops")
    votes: dict[str, float] = Field(default_factory=dict)
    extra: dict[str, Any] = Field(default_factory=dict)
