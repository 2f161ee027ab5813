"""Process reward models through transformers: one score per step, aggregated to one value."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import Field

from testtime.budget import BudgetExhausted
from testtime.registry import OPERATOR
from testtime.types import Candidate, Problem, Score
from testtime.verifiers.base import VerifierSettings, VerifyContext, verifiers
from testtime.verifiers.hf import (
    RewardModelError,
    billed_logits,
    load,
    off_loop,
    torch_and_transformers,
)
from testtime.verifiers.prm_formats import PRMFormat, get_format, steps_of
from testtime.verifiers.steps import aggregate


@verifiers.register("prm")
class PRMVerifier(VerifierSettings):
    """A process reward model (Qwen2.5-Math-PRM, Math-Shepherd, Skywork-PRM, …) in process.

    The candidate is split into steps (``split``), laid out as its ``family`` wants, and each
    step is scored at the last token of its marker; ``agg`` (min, last, product, mean) turns the
    step scores into the value. A partial solution (tree search) is scored the same way: its
    steps so far. ``model`` is a local directory or a hub id.
    """

    model: str = Field(description="local directory or hub id, e.g. Qwen/Qwen2.5-Math-PRM-7B")
    family: str = "qwen-prm"
    split: str = Field(default="blank", description="blank | step | line | a literal delimiter")
    agg: Literal["min", "last", "product", "mean"] = "min"
    device: str = "cpu"
    dtype: str = "auto"
    trust_remote_code: Annotated[bool, OPERATOR] = False
    max_steps: int = Field(default=64, ge=1)

    def model_post_init(self, __context: object) -> None:
        """Check the family now, so a bad spec fails before any model loads."""
        get_format(self.family)

    @property
    def format(self) -> PRMFormat:
        """The family's layout."""
        return get_format(self.family)

    async def score(self, problem: Problem, candidates: Sequence[Candidate],
                    ctx: VerifyContext) -> list[Score]:
        """Score every candidate's steps, one forward pass each, billed through ``ctx``."""
        out = []
        for c in candidates:
            steps = steps_of(c.text, self.split, self.max_steps)
            try:
                values = await off_loop(self.step_scores, problem.question, steps, ctx)
            except BudgetExhausted as exc:
                out.append(Score(value=0.5, detail=str(exc)))
                continue
            out.append(Score(value=aggregate(values, self.agg), steps=tuple(values),
                             detail=f"{len(values)} steps, {self.agg}"))
        await asyncio.sleep(0)
        return out

    def step_scores(self, question: str, steps: list[str],
                    ctx: VerifyContext | None = None) -> list[float]:
        """One probability per step (blocking); the pass is billed to ``ctx`` when given."""
        torch, _ = torch_and_transformers()
        fmt = self.format
        tokenizer, model = load(self.model, fmt.auto_class, device=self.device,
                                dtype=self.dtype, trust_remote_code=self.trust_remote_code)
        text, ends = self.layout(tokenizer, fmt, question, steps)
        enc = tokenizer(text, return_tensors="pt", return_offsets_mapping=True,
                        add_special_tokens=not fmt.chat)
        offsets = enc.pop("offset_mapping")[0].tolist()
        positions = [_token_ending(offsets, e) for e in ends]
        logits = billed_logits(model, enc, ctx)
        rows = logits[positions]
        if fmt.head == "classes":
            probs = torch.softmax(rows, dim=-1)[:, fmt.positive]
        elif fmt.head == "value":
            probs = torch.sigmoid(rows[:, 0])
        else:
            ids = tokenizer.encode(f"{fmt.good} {fmt.bad}", add_special_tokens=False)
            if len(ids) != 2:
                raise RewardModelError(f"{fmt.good!r}/{fmt.bad!r} are not one token each")
            probs = torch.softmax(rows[:, ids], dim=-1)[:, 0]
        return [float(p) for p in probs]

    @staticmethod
    def layout(tokenizer: object, fmt: PRMFormat, question: str,
               steps: list[str]) -> tuple[str, list[int]]:
        """The model's input text and the character offset where each step's marker ends."""
        user, body = fmt.layout(question, steps)
        ends, pos = [], 0
        for i, s in enumerate(steps):
            pos += (len(fmt.joiner) if i else 0) + len(s) + len(fmt.marker)
            ends.append(pos)
        template = getattr(tokenizer, "chat_template", None)
        if fmt.chat and template:
            msgs = ([{"role": "system", "content": fmt.system}] if fmt.system else []) + [
                {"role": "user", "content": user}, {"role": "assistant", "content": body}]
            text = tokenizer.apply_chat_template(msgs, tokenize=False)  # type: ignore[attr-defined]
        else:
            text = fmt.render(question, steps)
        start = text.rfind(body)
        if start < 0:
            raise RewardModelError("the chat template altered the steps; cannot align scores")
        return text, [start + e for e in ends]


def _token_ending(offsets: list[list[int]], end: int) -> int:
    """Index of the last non-empty token that starts before character ``end``."""
    best = -1
    for i, (a, b) in enumerate(offsets):
        if b > a and a < end:
            best = i
    if best < 0:
        raise RewardModelError(f"no token before character {end}")
    return best
