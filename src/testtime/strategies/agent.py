"""Agents under a budget: a ReAct loop (Yao et al., 2023) with a budget tracker (Liu et al.,
2025, "Budget-Aware Tool-Use Enables Effective Agent Scaling").

The model works in turns. In each turn it either calls one of the tools it is offered, by
writing ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` (the Hermes format Qwen
models are trained on, shown in the prompt by a worked example), or replies without a call,
which is its final answer. A call is run through the Context (``Context.call_tool``: billed as
a tool run, a ``python`` call also as a sandbox run) and its result comes back as an
observation turn, ``<tool_response>…</tool_response>`` in a user turn (how Qwen's chat
template shows a tool's message, and a turn every template can render). Every user turn ends
with the budget tracker, ``<budget>tokens left: N; tool calls left: M</budget>``: the
trajectory's generated tokens left (its ``max_tokens``, or less where the run's Budget leaves
less) and its tool calls left (``max_tool_calls``), so the model sees what it has left at
every turn.

A trajectory stops when the model replies without a tool call, when its tokens run out,
after ``max_turns`` model turns, or when the Budget says so (``Context.exhausted``). A call the
model finished writing is still run on the turn that spent the last tokens (a tool costs no
tokens), unless the deadline has passed. Its answer is then the best one so far: the answer
of its final reply; else the last answer a turn stated ("The answer is N", boxed, ``####``);
else the last number a tool returned; else none.

``n`` trajectories run at once and are voted on by their answers (``select=vote``,
self-consistency over trajectories), or scored by a verifier and the best one taken
(``select=best``; default verifier: the model's confidence over the trajectory's tokens).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from testtime.answers import extract_answer
from testtime.registry import CLIENT, SpecError
from testtime.strategies.aggregate import aggregated_result
from testtime.strategies.base import Context, StrategySettings, strategies
from testtime.tools.base import Tool
from testtime.types import Candidate, Completion, Message, Problem, Prompt, Result
from testtime.verifiers.base import Verifier

OPEN, CLOSE = "<tool_call>", "</tool_call>"
SYSTEM = (
    "Answer the user's question step by step. Do not compute in your head: for every "
    "calculation, call a tool.\n\n# Tools\n\nYou may call one or more functions to assist "
    "with the user query.\n\nYou are provided with function signatures within "
    "<tools></tools> XML tags:\n<tools>\n{tools}\n</tools>\n\nFor each function call, "
    "return a json object with function name and arguments within <tool_call></tool_call> "
    "XML tags:\n<tool_call>\n{{\"name\": <function-name>, \"arguments\": "
    "<args-json-object>}}\n</tool_call>\n\nThe result comes back in "
    "<tool_response></tool_response>. Every user message ends with <budget></budget>: the "
    "tokens and tool calls you have left; finish before they run out. When you know the "
    "answer, reply without a tool call and end with 'The answer is N.'")
EXAMPLE = ("A shop sells pens at $3 each. Mia buys 14 pens and pays with a $50 bill. How much "
           "change does she get?",
           "Mia pays $42 for the pens, so her change is $8. The answer is 8.")
EXAMPLE_CALLS: dict[str, tuple[tuple[dict[str, Any], str], ...]] = {
    "calculator": (({"expression": "14 * 3"}, "42"), ({"expression": "50 - 42"}, "8")),
    "python": (({"code": "print(50 - 14 * 3)"}, "8"),),
}
"""The worked trajectory's calls (arguments, output) for each tool that has one."""
HINT = "Call a tool for every calculation."
"""Said again under the question: a small model heeds its last message most."""
_NUMBER = re.compile(r"^\s*-?\d+(?:\.\d+)?\s*$")


def budget_line(tokens: int, calls: int) -> str:
    """The budget tracker shown at the end of every user turn."""
    return f"<budget>tokens left: {max(tokens, 0)}; tool calls left: {max(calls, 0)}</budget>"


def observation(output: str) -> str:
    """A tool's output as the model reads it."""
    return f"<tool_response>\n{output}\n</tool_response>"


def agent_prompt(question: str, tools: Mapping[str, Tool], tokens: int,
                 calls: int) -> list[Message]:
    """The opening messages: the instruction with the tools' schemas, one worked trajectory
    (with the first offered tool that has one), then the question and the budget."""
    listed = "\n".join(json.dumps(t.schema(), ensure_ascii=False)
                       for _, t in sorted(tools.items()))
    messages = [Message(role="system", content=SYSTEM.format(tools=listed or "(none)"))]
    example = next((name for name in EXAMPLE_CALLS if name in tools), None)
    if example is not None and calls > 0:
        steps = EXAMPLE_CALLS[example]
        tokens_shown, calls_shown = 600, len(steps) + 2
        messages.append(Message(role="user", content=f"{EXAMPLE[0]}\n{HINT}\n"
                                f"{budget_line(tokens_shown, calls_shown)}"))
        for arguments, output in steps:
            shown = json.dumps({"name": example, "arguments": arguments})
            tokens_shown, calls_shown = tokens_shown - 25, calls_shown - 1
            messages += [Message(role="assistant", content=f"{OPEN}\n{shown}\n{CLOSE}"),
                         Message(role="user", content=f"{observation(output)}\n"
                                 f"{budget_line(tokens_shown, calls_shown)}")]
        messages.append(Message(role="assistant", content=EXAMPLE[1]))
    hint = f"{HINT}\n" if tools and calls > 0 else ""
    messages.append(Message(role="user",
                            content=f"{question}\n{hint}{budget_line(tokens, calls)}"))
    return messages


@dataclass(frozen=True)
class Call:
    """A tool call read from a turn: the tool's name and arguments, or why it is unreadable."""

    name: str = ""
    arguments: Any = None
    problem: str | None = None

    def written(self, prose: str) -> str:
        """The turn as the history keeps it: its prose, then the call in the canonical
        ``<tool_call>`` form (whatever came after the call is dropped)."""
        call = json.dumps({"name": self.name, "arguments": self.arguments}, ensure_ascii=False)
        lead = f"{prose.rstrip()}\n" if prose.strip() else ""
        return f"{lead}{OPEN}\n{call}\n{CLOSE}"


UNREADABLE = 'the tool call is not JSON of the form {"name": "TOOL", "arguments": {...}}'
_FENCE = re.compile(r"```(?:json)?\s*$")


def _as_call(obj: Any) -> Call | None:
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return None
    return Call(name=obj["name"], arguments=obj.get("arguments", obj.get("parameters", {})))


def read_call(text: str) -> tuple[str, Call | None]:
    """``(prose, call)`` of a turn: the text before its tool call and the call (None when
    the turn calls no tool).

    A call is a ``<tool_call>`` block, or, for engines that drop the tag (Qwen's is a special
    token that llama.cpp does not print), a JSON object with ``name`` and ``arguments`` keys,
    bare or fenced. A ``<tool_call>`` whose body is not such JSON is an unreadable call.
    """
    decoder = json.JSONDecoder()
    if OPEN in text:
        prose, _, rest = text.partition(OPEN)
        try:
            obj, _ = decoder.raw_decode(rest.split(CLOSE)[0].strip())
        except ValueError:
            obj = None
        return prose, _as_call(obj) or Call(problem=UNREADABLE)
    for match in re.finditer(r"\{", text):
        try:
            obj, _ = decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        if isinstance(obj, dict) and "arguments" in obj and (call := _as_call(obj)):
            return _FENCE.sub("", text[:match.start()]), call
    return text, None


@dataclass
class Trajectory:
    """One agent run: its turns (for the record), transcript, spend and best answer so far."""

    turns: list[dict[str, Any]] = field(default_factory=list)
    transcript: list[str] = field(default_factory=list)
    tokens: int = 0
    calls: int = 0
    final: str | None = None
    answered: bool = False
    stated: str | None = None
    computed: str | None = None
    stopped: str = "max_turns"
    logprobs: list[float] = field(default_factory=list)

    @property
    def answer(self) -> str | None:
        """The best answer so far: the final reply's, else the last stated, else the last
        number a tool returned."""
        return self.final or self.stated or self.computed

    def candidate(self) -> Candidate:
        """The trajectory as a candidate: its transcript, its answer, its spend."""
        text = "\n".join(self.transcript)
        done = Completion(text=text, finish_reason="stop" if self.answered else "length",
                          generated_tokens=self.tokens,
                          logprobs=tuple(self.logprobs) if self.logprobs else None)
        return Candidate(text=text, answer=self.answer, completion=done)

    def record(self) -> dict[str, Any]:
        """What ``Result.extra['trajectories']`` keeps of it."""
        return {"answer": self.answer, "stopped": self.stopped, "tokens": self.tokens,
                "tool_calls": self.calls, "turns": self.turns}


@strategies.register("agent")
class Agent(StrategySettings):
    """A ReAct agent that sees its remaining budget every turn: ``n`` trajectories of model
    turns and tool calls (at most ``max_turns`` turns, ``max_tool_calls`` calls and
    ``max_tokens`` generated tokens each), voted on by their answers or chosen by a verifier."""

    runs_code: ClassVar[bool] = True
    uses_verifier: ClassVar[bool] = True
    default_verifier: ClassVar[str | None] = "confidence"

    n: int = Field(default=1, ge=1, le=64, description="trajectories run at once")
    max_turns: int = Field(default=8, ge=1, le=64, description="model turns per trajectory")
    max_tool_calls: int = Field(default=4, ge=0, le=64,
                                description="tool calls per trajectory")
    max_tokens: int = Field(default=1024, ge=1, le=131072,
                            description="generated tokens per trajectory, all turns together")
    tools: Annotated[str | None, CLIENT] = Field(
        default=None, description="the tools offered, by name, joined by '+' "
        "(calculator+python); default: every tool the run offers (on the gateway: those "
        "its operator enabled)")
    select: Literal["vote", "best"] = "vote"

    @field_validator("tools")
    @classmethod
    def _names(cls, value: str | None) -> str | None:
        if value is None:
            return None
        names = [n.strip() for n in value.split("+")]
        bad = [n for n in names if not n.isidentifier()]
        if bad:
            raise ValueError(f"tool names are identifiers joined by '+', not {bad[0]!r}")
        return "+".join(names)

    @model_validator(mode="after")
    def _scored_only(self) -> Agent:
        if self.verifier and self.select == "vote":
            raise ValueError("a verifier chooses a trajectory only with select=best")
        return self

    def wants_tools(self) -> tuple[str, ...]:
        """The tools its ``tools`` option names."""
        return tuple(self.tools.split("+")) if self.tools else ()

    def verifier_for(self, given: Verifier | None) -> Verifier | None:
        """A verifier only where trajectories are scored (``select=best``)."""
        return None if self.select == "vote" else super().verifier_for(given)

    def offered(self, ctx: Context) -> dict[str, Tool]:
        """The tools this agent offers the model: those it names, else all the run offers."""
        wanted = self.wants_tools() or tuple(ctx.tools)
        missing = [n for n in wanted if n not in ctx.tools]
        if missing:
            raise SpecError(f"tool(s) {', '.join(missing)} are not offered here; tools: "
                            f"{', '.join(sorted(ctx.tools)) or 'none'}")
        return {n: ctx.tools[n] for n in wanted}

    async def run(self, problem: Problem, ctx: Context) -> Result:
        """Run the trajectories, then vote over their answers or take the best-scored."""
        tools = self.offered(ctx)
        done = await asyncio.gather(*(self.trajectory(problem, ctx, tools)
                                      for _ in range(self.n)))
        candidates = [t.candidate() for t in done]
        trajectories = [t.record() for t in done]
        if self.select == "vote":
            return await aggregated_result(problem, candidates, ctx, trajectories=trajectories)
        scored = await ctx.score(problem, candidates)
        values = [c.score.value if c.score is not None else 0.0 for c in scored]
        best = max(range(len(scored)), key=lambda i: (scored[i].has_answer, values[i], -i))
        return ctx.result(problem, scored[best].answer, scored, text=scored[best].text,
                          chosen=best, trajectories=trajectories)

    def tokens_left(self, ctx: Context, used: int) -> int:
        """Generated tokens the trajectory may still spend: its own, or the run's if fewer."""
        own = self.max_tokens - used
        shared = ctx.ledger.remaining_generated()
        return own if shared is None else min(own, shared)

    async def trajectory(self, problem: Problem, ctx: Context,
                         tools: Mapping[str, Tool]) -> Trajectory:
        """One trajectory: turns until an answer, the budget's end or ``max_turns``."""
        t = Trajectory()
        messages = agent_prompt(problem.question, tools, self.tokens_left(ctx, 0),
                                self.max_tool_calls)
        for turn in range(self.max_turns):
            if ctx.exhausted or ctx.ledger.out_of_tokens():
                t.stopped = "budget"
                return t
            left = self.tokens_left(ctx, t.tokens)
            if left <= 0:
                t.stopped = "tokens"
                return t
            got = await ctx.sample(Prompt(messages=tuple(messages)), 1,
                                   temperature=self.temperature, max_tokens=left,
                                   stop=(CLOSE,), kind=problem.kind)
            if not got:
                t.stopped = "budget"
                return t
            reply = got[0]
            t.tokens += reply.completion.generated_tokens
            t.logprobs += reply.completion.logprobs or ()
            text = reply.completion.text.removesuffix(CLOSE)
            prose, call = read_call(text)
            cut = reply.completion.finish_reason == "length"
            if call is None:
                t.transcript.append(text.strip())
                t.turns.append({"turn": turn, "text": text})
                t.final, t.answered = reply.answer, not cut
                t.stopped = self.why_cut(ctx) if cut else "answer"
                return t
            t.stated = extract_answer(prose, marked_only=True) or t.stated
            shown = call.written(prose) if call.problem is None else f"{text.rstrip()}{CLOSE}"
            t.transcript.append(shown.strip())
            record: dict[str, Any] = {"turn": turn, "text": shown}
            t.turns.append(record)
            if cut or ctx.ledger.limit == "seconds":
                t.stopped = self.why_cut(ctx)
                return t
            output = await self.act(call, t, ctx, tools, record)
            t.transcript.append(observation(output))
            tracker = budget_line(self.tokens_left(ctx, t.tokens), self.max_tool_calls - t.calls)
            record["budget"] = tracker
            messages += [Message(role="assistant", content=shown),
                         Message(role="user", content=f"{observation(output)}\n{tracker}")]
        return t

    @staticmethod
    def why_cut(ctx: Context) -> str:
        """Why a turn was cut short: the run's Budget (``budget``) or the trajectory's own
        ``max_tokens`` (``tokens``)."""
        return "budget" if ctx.exhausted or ctx.ledger.out_of_tokens() else "tokens"

    async def act(self, call: Call, t: Trajectory, ctx: Context, tools: Mapping[str, Tool],
                  record: dict[str, Any]) -> str:
        """Run the turn's call if it may be run; what the model is shown either way."""
        t.calls += 1
        if t.calls > self.max_tool_calls:
            output = "error: no tool calls are left; reply with your final answer"
        elif call.problem is not None:
            output = f"error: {call.problem}"
        elif call.name not in tools:
            output = (f"error: there is no tool {call.name!r}; tools: "
                      f"{', '.join(sorted(tools)) or 'none'}")
        else:
            result = await ctx.call_tool(call.name, call.arguments)
            output = result.output
            if result.ok and result.value is not None and _NUMBER.match(result.value):
                t.computed = result.value.strip()
            record.update(tool=call.name, arguments=call.arguments, ok=result.ok,
                          seconds=round(result.seconds, 4))
        record["output"] = output
        return output
