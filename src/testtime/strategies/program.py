"""Programs as thoughts: program-of-thought (Chen et al., 2022) and PAL (Gao et al., 2023).

The model does not compute the answer in text; it writes a Python program that does, shown by
worked examples how (one variable per quantity, the result in ``answer``, printed). The code
sandbox runs each program (the boxes and limits of code verification; no network) and what it
printed is the sample's answer. A program that raises, loops, floods its output or crashes
gives no answer and counts as unanswered; with ``repair`` the model sees its traceback once and
may fix it (Chen et al., 2023, "Teaching Large Language Models to Self-Debug").

:class:`ProgramThoughts` is the reusable step: any strategy that takes its samples through
:meth:`~testtime.strategies.base.StrategySettings.draw` samples programs when it derives from
it. The ``program`` strategy votes over program answers (self-consistency over programs) or,
with ``select``, takes the best-scored or the verifier-weighted answer.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from testtime.answers import extract_answer
from testtime.code.extract import extract_code
from testtime.code.programs import ProgramRun
from testtime.code.settings import SandboxOptions
from testtime.policy.pools import Pool
from testtime.strategies.aggregate import aggregated_result
from testtime.strategies.base import Context, StrategySettings, strategies
from testtime.traces import Watcher
from testtime.types import Candidate, Message, Problem, Prompt, Result
from testtime.verifiers.base import Verifier

SYSTEM = (
    "You solve math word problems by writing a Python program. Give every quantity in the "
    "question a variable with a meaningful name, compute the result step by step, store it in "
    "a variable named `answer` and end with `print(answer)`. Reply with one ```python code "
    "block and nothing else.")
EXAMPLES: tuple[tuple[str, str], ...] = (
    ("A baker makes 24 muffins in the morning and 18 in the afternoon. She sells 30 of them. "
     "How many muffins are left?",
     "morning_muffins = 24\nafternoon_muffins = 18\nsold = 30\n"
     "answer = morning_muffins + afternoon_muffins - sold\nprint(answer)"),
    ("Tom buys 3 notebooks at $2.50 each and a pen for $1.25. He pays with a $20 bill. How "
     "much change does he get?",
     "notebooks = 3\nnotebook_price = 2.50\npen_price = 1.25\npaid = 20\n"
     "cost = notebooks * notebook_price + pen_price\nanswer = paid - cost\nprint(answer)"),
    ("A train travels at 60 miles per hour for 2.5 hours, then at 40 miles per hour for half "
     "as long. How many miles does it travel in all?",
     "first_speed = 60\nfirst_hours = 2.5\nsecond_speed = 40\nsecond_hours = first_hours / 2\n"
     "answer = first_speed * first_hours + second_speed * second_hours\nprint(answer)"),
)
REPAIR = ("Running that program gave:\n```\n{feedback}\n```\nIt did not print an answer. "
          "Write the corrected program: one ```python code block ending with `print(answer)`.")


def program_prompt(question: str) -> Prompt:
    """The program-of-thought prompt: the instruction, the worked examples, the question."""
    messages = [Message(role="system", content=SYSTEM)]
    for q, code in EXAMPLES:
        messages += [Message(role="user", content=q),
                     Message(role="assistant", content=f"```python\n{code}\n```")]
    messages.append(Message(role="user", content=question))
    return Prompt(messages=tuple(messages))


def program_answer(run: ProgramRun) -> str | None:
    """The answer a program's result states: the number in its last printed line (a float
    within 1e-6 of a whole number is that number), else the line itself."""
    line = run.result
    if line is None:
        return None
    try:
        value = float(line)
    except ValueError:
        return extract_answer(line) or line
    if math.isfinite(value) and abs(value - round(value)) < 1e-6:
        return str(round(value))
    return line


def shown_with_output(reply: str, run: ProgramRun) -> str:
    """A program sample's text: the model's reply, then what running it showed."""
    return f"{reply.rstrip()}\n\n```output\n{run.feedback()}\n```"


class SandboxSettings(SandboxOptions, StrategySettings):
    """A strategy that runs model-written code: the sandbox's options, the operator's alone
    (as for the code verifiers), and one way to run a batch of programs, billed."""

    runs_code: ClassVar[bool] = True

    async def run_code(self, programs: Sequence[str], ctx: Context) -> list[ProgramRun]:
        """Run ``programs`` in the sandbox, billed to the Context's ledger."""
        return await ctx.execute(programs, self.limits, self.sandbox, self.parallel)


class ProgramThoughts(SandboxSettings):
    """Samples are programs: :meth:`draw` samples them, runs each in the sandbox, repairs a
    failed one once (``repair``), and answers with what it printed."""

    whole_replies: ClassVar[bool] = False

    repair: bool = Field(default=False, description="show a failed program its traceback "
                                                    "once and run the fix")

    def draw_prompt(self, problem: Problem) -> Prompt:
        """The program-of-thought prompt for the problem's question."""
        return program_prompt(problem.question)

    async def draw(self, problem: Problem, ctx: Context, n: int, *, top_logprobs: int = 0,
                   watch: Watcher | None = None) -> list[Candidate]:
        """``n`` program samples, each answered by running its program (one ``watch``
        stopped is not run and has no answer)."""
        prompt = self.draw_prompt(problem)
        if watch is not None:
            drafts = [t.candidate for t in await ctx.traces(
                prompt, n, watch=watch, temperature=self.temperature,
                max_tokens=self.max_tokens, top_logprobs=top_logprobs, kind="code")
                if t.candidate is not None]
        else:
            drafts = await ctx.sample(prompt, n, temperature=self.temperature,
                                      max_tokens=self.max_tokens, top_logprobs=top_logprobs,
                                      kind="code")
        stopped = [d for d in drafts if d.completion.finish_reason == "stopped"]
        drafts = [d for d in drafts if d.completion.finish_reason != "stopped"]
        runs = await self.execute(drafts, ctx)
        done = [answered(d, r) for d, r in zip(drafts, runs, strict=True)]
        done += [d.model_copy(update={"answer": None}) for d in stopped]
        if not self.repair:
            return done
        failed = [i for i in range(len(drafts)) if done[i].answer is None]
        fixes = await asyncio.gather(*(self._repair(prompt, drafts[i], runs[i], ctx)
                                       for i in failed))
        for i, fixed in zip(failed, fixes, strict=True):
            if fixed is not None:
                done[i] = fixed.model_copy(update={"text": f"{done[i].text}\n\n{fixed.text}"})
        return done

    async def execute(self, drafts: Sequence[Candidate], ctx: Context) -> list[ProgramRun]:
        """Run each draft's program in the sandbox, billed to the Context's ledger."""
        return await self.run_code([extract_code(d.completion.text) for d in drafts], ctx)

    async def _repair(self, prompt: Prompt, draft: Candidate, run: ProgramRun,
                      ctx: Context) -> Candidate | None:
        turn = prompt.model_copy(update={"messages": (
            *prompt.messages, Message(role="assistant", content=draft.completion.text),
            Message(role="user", content=REPAIR.format(feedback=run.feedback())))})
        again = await ctx.sample(turn, 1, temperature=self.temperature,
                                 max_tokens=self.max_tokens, kind="code")
        if not again:
            return None
        return answered(again[0], (await self.execute(again, ctx))[0])


def answered(draft: Candidate, run: ProgramRun) -> Candidate:
    """``draft`` answered by its program's ``run``: the output shown, the result as answer."""
    return draft.model_copy(update={"text": shown_with_output(draft.text, run),
                                    "answer": program_answer(run)})


@strategies.register("program")
class Program(ProgramThoughts):
    """Program-of-thought: ``n`` programs, each run in the sandbox; the answer most programs
    printed wins (``select=majority``, self-consistency over programs), or the best-scored one
    (``best``), or the answer with the most verifier score (``weighted``)."""

    pool: ClassVar[Pool | None] = None
    draws_samples: ClassVar[bool] = True
    uses_verifier: ClassVar[bool] = True
    default_verifier: ClassVar[str | None] = "confidence"

    n: int = Field(default=1, ge=1, le=4096)
    select: Literal["majority", "best", "weighted"] = "majority"

    def verifier_for(self, given: Verifier | None) -> Verifier | None:
        """A verifier only where programs are scored (``best``, ``weighted``; default: the
        model's confidence)."""
        return None if self.select == "majority" else super().verifier_for(given)

    @model_validator(mode="after")
    def _scored_only(self) -> Program:
        if self.verifier and self.select == "majority":
            raise ValueError("a verifier scores programs only with select=best or weighted")
        return self

    async def run(self, problem: Problem, ctx: Context) -> Result:
        """Draw programs, run them, then vote or select over what they printed."""
        candidates = await self.draw(problem, ctx, self.n)
        if self.select == "majority":
            return await aggregated_result(problem, candidates, ctx)
        scored = await ctx.score(problem, candidates)
        values = [c.score.value if c.score is not None else 0.0 for c in scored]
        if self.select == "weighted":
            return await aggregated_result(problem, scored, ctx, weights=values)
        if not scored:
            return ctx.result(problem, None, scored)
        best = max(range(len(scored)), key=lambda i: (scored[i].has_answer, values[i], -i))
        return ctx.result(problem, scored[best].answer, scored, text=scored[best].text,
                          chosen=best)

