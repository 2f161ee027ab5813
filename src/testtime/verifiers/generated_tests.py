"""Code verification without given tests: the model writes tests, the pass matrix picks."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import ClassVar

from pydantic import Field, PrivateAttr

from testtime.code.generated import GeneratedTest, parse_tests, select
from testtime.code.problems import code_prompt, program_for
from testtime.code.sandbox import run_calls
from testtime.types import Candidate, GenerationRequest, Problem, Prompt, Score
from testtime.verifiers.base import VerifyContext, verifiers
from testtime.verifiers.tests import SandboxedVerifier
from testtime.verifiers.verdicts import JudgeBackend

ASK = ("Write {count} test cases for the Python function below, to check an implementation "
       "of it. Reply with only Python assert statements, one per line, each of the form\n"
       "assert {entry}(<arguments>) == <expected result>\n"
       "using only literal values (numbers, strings, lists, tuples, dicts, sets, booleans, "
       "None). Cover the examples in the docstring and edge cases. Do not implement the "
       "function.\n\n```python\n{prompt}\n```")
KEPT = 1024


@verifiers.register("codet")
class GeneratedTestsVerifier(SandboxedVerifier):
    """CodeT-style selection by tests the model writes; needs no tests from the problem.

    The model (the policy's backend unless ``backend=SPEC``) is asked ``samples`` times for
    test cases of the problem's entry point; only literal inputs and expected values are
    kept. Every candidate runs on every generated input in the sandbox, one run each; the
    score is CodeT's dual agreement: the size of the candidate's output cluster times the
    generated tests its outputs pass, scaled so the best cluster scores 1. Test generation
    is billed as verifier tokens (once per problem), runs as sandbox seconds.
    """

    cacheable: ClassVar[bool] = False

    backend: str | None = Field(default=None, description="test-writing model; default: policy")
    samples: int = Field(default=2, ge=1, le=32, description="test-writing generations")
    count: int = Field(default=8, ge=1, le=64, description="tests asked for per generation")
    max_tests: int = Field(default=32, ge=1, le=512, description="distinct inputs kept")
    max_tokens: int = Field(default=400, ge=16, le=8192)
    temperature: float = Field(default=0.6, ge=0.0, le=2.0)
    _writer: JudgeBackend | None = PrivateAttr(default=None)
    _tests: dict[tuple[str, str], list[GeneratedTest]] = PrivateAttr(default_factory=dict)
    _writing: dict[tuple[str, str], asyncio.Lock] = PrivateAttr(default_factory=dict)

    def model_post_init(self, __context: object) -> None:
        """Build the test writer's backend once."""
        self._writer = JudgeBackend(self.backend)

    async def tests(self, problem: Problem, ctx: VerifyContext) -> list[GeneratedTest]:
        """The generated tests of ``problem``, written once and kept for later calls."""
        key = (problem.id, problem.question)
        if key not in self._tests:
            async with self._writing.setdefault(key, asyncio.Lock()):
                if key not in self._tests:
                    if len(self._tests) >= KEPT:
                        self._tests.pop(next(iter(self._tests)))
                    self._tests[key] = await self._write(problem, ctx)
            self._writing.pop(key, None)
        return self._tests[key]

    async def _write(self, problem: Problem, ctx: VerifyContext) -> list[GeneratedTest]:
        assert self._writer is not None
        prompt, entry = code_prompt(problem)
        gen = await self._writer.ask(ctx, GenerationRequest(
            prompt=Prompt.chat(ASK.format(count=self.count, entry=entry, prompt=prompt.strip())),
            n=self.samples, max_tokens=self.max_tokens, temperature=self.temperature))
        found: list[GeneratedTest] = []
        for completion in gen.completions:
            found.extend(parse_tests(completion.text, entry))
        unique = {(t.key, repr(t.expected), t.has_expected): t for t in found}
        return list(unique.values())

    async def score(self, problem: Problem, candidates: Sequence[Candidate],
                    ctx: VerifyContext) -> list[Score]:
        """Run every candidate on every generated input and score by dual agreement."""
        tests = await self.tests(problem, ctx)
        inputs = list({t.key: t for t in tests}.values())[:self.max_tests]
        kept = {t.key for t in inputs}
        tests = [t for t in tests if t.key in kept]
        if not inputs:
            return [Score(value=0.0, detail="the model wrote no usable test") for _ in candidates]
        _, entry = code_prompt(problem)
        calls = [(entry, list(t.args), dict(t.kwargs)) for t in inputs]
        runs = await self.run_all(candidates, lambda c: run_calls(
            program_for(problem, c.text), calls, self.limits, self.sandbox), ctx)
        return [Score(value=value, detail=f"{detail}; {run.status}, {run.mode} box")
                for (value, detail), run in zip(select(tests, inputs, runs), runs, strict=True)]
