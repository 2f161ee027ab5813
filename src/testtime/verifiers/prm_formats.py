"""How each PRM family wants a solution laid out and where its step scores are read.

One small config per family instead of if/elif: the separator written after each step, the
marker whose last token carries the step's score, how that token's output becomes a
probability, and whether the chat template wraps question and steps.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from testtime.verifiers.steps import StepError, split_steps

Head = Literal["classes", "lm-tokens", "value"]


class PRMFormat(BaseModel):
    """The input layout and score head of one PRM family.

    ``head``: ``classes`` softmax over per-token class logits, positive class ``positive``
    (Qwen2.5-Math-PRM); ``lm-tokens`` softmax over the LM logits of ``good``/``bad`` tokens
    (Math-Shepherd); ``value`` sigmoid of a scalar per token (Skywork-PRM's value head).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    marker: str
    joiner: str = ""
    head: Head
    auto_class: str
    chat: bool = False
    system: str | None = None
    template: str = "{question} {steps}"
    positive: int = 1
    good: str = "+"
    bad: str = "-"

    def layout(self, question: str, steps: list[str]) -> tuple[str, str]:
        """(user part, assistant part) with ``marker`` after every step."""
        body = self.joiner.join(f"{s}{self.marker}" for s in steps)
        return question, body

    def render(self, question: str, steps: list[str]) -> str:
        """The flat input text for families that use no chat template."""
        q, body = self.layout(question, steps)
        return self.template.format(question=q, steps=body)


FORMATS: dict[str, PRMFormat] = {f.name: f for f in (
    PRMFormat(name="qwen-prm", marker="<extra_0>", head="classes",
              auto_class="AutoModelForTokenClassification", chat=True,
              system="Please reason step by step, and put your final answer within \\boxed{}."),
    PRMFormat(name="math-shepherd", marker=" ки", joiner="\n", head="lm-tokens",
              auto_class="AutoModelForCausalLM", good="+", bad="-"),
    PRMFormat(name="skywork-prm", marker="\n", head="value",
              auto_class="AutoModelForTokenClassification", template="{question}\n{steps}"),
)}


def get_format(name: str) -> PRMFormat:
    """The format registered under ``name``; a clear error lists the known ones."""
    try:
        return FORMATS[name]
    except KeyError:
        raise StepError(f"unknown PRM family {name!r}; known: {', '.join(sorted(FORMATS))}")\
            from None


def steps_of(text: str, split: str, limit: int) -> list[str]:
    """The candidate's steps, the last ones merged so that there are at most ``limit``."""
    steps = split_steps(text, split) or [text.strip() or "(empty)"]
    if len(steps) > limit:
        steps = [*steps[: limit - 1], "\n".join(steps[limit - 1:])]
    return steps
