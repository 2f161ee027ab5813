"""Outcome reward models through transformers: one sequence-classification score per solution."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from pydantic import Field

from testtime.budget import BudgetExhausted
from testtime.registry import OPERATOR
from testtime.types import Candidate, Problem, Score
from testtime.verifiers.base import VerifierSettings, VerifyContext, verifiers
from testtime.verifiers.hf import (
    billed_logits,
    load,
    off_loop,
    torch_and_transformers,
)


@verifiers.register("orm")
class ORMVerifier(VerifierSettings):
    """A sequence-classification reward model scoring the whole solution.

    One output logit is read through a sigmoid; several through a softmax, taking class
    ``positive``. The input is the chat template (question as user, solution as assistant)
    where the tokenizer has one, else ``question`` and solution separated by a blank line.
    """

    model: str = Field(description="local directory or hub id of the reward model")
    positive: int = Field(default=1, ge=0)
    device: str = "cpu"
    dtype: str = "auto"
    trust_remote_code: Annotated[bool, OPERATOR] = False

    async def score(self, problem: Problem, candidates: Sequence[Candidate],
                    ctx: VerifyContext) -> list[Score]:
        """One forward pass per candidate, each planned and billed through ``ctx``."""
        out = []
        for c in candidates:
            try:
                out.append(await off_loop(self.one, problem.question, c.text, ctx))
            except BudgetExhausted as exc:
                out.append(Score(value=0.5, detail=str(exc)))
        return out

    def one(self, question: str, solution: str, ctx: VerifyContext | None = None) -> Score:
        """The reward of one solution (blocking); billed to ``ctx`` when given."""
        torch, _ = torch_and_transformers()
        tokenizer, model = load(self.model, "AutoModelForSequenceClassification",
                                device=self.device, dtype=self.dtype,
                                trust_remote_code=self.trust_remote_code)
        if getattr(tokenizer, "chat_template", None):
            text = tokenizer.apply_chat_template(
                [{"role": "user", "content": question},
                 {"role": "assistant", "content": solution}], tokenize=False)
            enc = tokenizer(text, return_tensors="pt", add_special_tokens=False)
        else:
            enc = tokenizer(f"{question}\n\n{solution}", return_tensors="pt")
        logits = billed_logits(model, enc, ctx).reshape(-1)
        if logits.numel() == 1:
            value = float(torch.sigmoid(logits[0]))
            return Score(value=value, detail=f"reward logit {float(logits[0]):.3f}")
        if self.positive >= logits.numel():
            raise ValueError(f"orm positive={self.positive} but the model has "
                             f"{logits.numel()} classes")
        value = float(torch.softmax(logits, dim=-1)[self.positive])
        return Score(value=value, detail=f"P(class {self.positive})")
