"""Choosing one candidate from many: majority vote over answers, universal self-consistency
for free text.

Answers that can be compared exactly (numbers, math expressions, code, canonical tool calls)
are voted on. Free-text candidates carry no such answer, so for free-text problems they are
aggregated by universal self-consistency (Chen et al., 2023, "Universal Self-Consistency for
Large Language Model Generation"): the model is shown the candidates and names the most
consistent one. That call is billed to the ledger as verifier compute. When candidates carry
verifier scores (``weighted-vote`` with a judge), the best-scored free-text candidate is taken
instead, with no extra call.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from testtime.chat import split_reasoning
from testtime.strategies.base import Context
from testtime.strategies.voting import vote
from testtime.types import Candidate, GenerationRequest, Problem, Prompt, Result

USC_PROMPT = (
    "I have generated the following responses to the question: {question}\n\n{responses}\n\n"
    "Evaluate these responses.\nSelect the most consistent response based on majority "
    "consensus.\nStart your answer with \"The most consistent response is Response X\" "
    "(without quotes).")
USC_CHARS = 4000  # characters of candidate text shown in all, so the prompt fits the context
_PICK = re.compile(r"response\s*#?\s*(\d+)", re.IGNORECASE)


@dataclass
class Aggregation:
    """What aggregation chose: the answer (None for free text), its text, the votes, how."""

    answer: str | None
    text: str | None
    votes: dict[str, float] = field(default_factory=dict)
    method: str = "majority"


def _shown(c: Candidate, chars: int) -> str:
    reply = split_reasoning(c.text)[1] or c.text
    reply = reply.strip()
    return reply if len(reply) <= chars else reply[:chars] + " …"


def usc_prompt(problem: Problem, pool: Sequence[Candidate]) -> Prompt:
    """The universal self-consistency prompt showing ``pool`` as numbered responses."""
    chars = max(USC_CHARS // max(len(pool), 1), 200)
    responses = "\n\n".join(f"Response {i}: {_shown(c, chars)}" for i, c in enumerate(pool, 1))
    return Prompt.chat(USC_PROMPT.format(question=problem.question, responses=responses))


def overlap_medoid(pool: Sequence[Candidate]) -> int:
    """Index of the candidate sharing the most words with the others (ties: the first)."""
    bags = [set(_shown(c, USC_CHARS).lower().split()) for c in pool]

    def agreement(i: int) -> float:
        return sum(len(bags[i] & b) / max(len(bags[i] | b), 1)
                   for j, b in enumerate(bags) if j != i)

    return max(range(len(pool)), key=lambda i: (agreement(i), -i))


async def universal_self_consistency(problem: Problem, pool: Sequence[Candidate],
                                     ctx: Context) -> tuple[int, str]:
    """Ask the model which of ``pool`` is most consistent: (index, method).

    The method is ``usc``; ``unanimous`` when the texts are all the same (no call is made);
    or ``usc-overlap`` when the budget leaves no room for the call or
    the model's reply names no candidate (then the candidate sharing the most words with the
    others is taken, the same consensus measured on words).
    """
    if len({c.text.strip() for c in pool}) == 1:
        return 0, "unanimous"
    prompt = usc_prompt(problem, pool)
    gen = await ctx.judge(GenerationRequest(prompt=prompt, n=1, temperature=0.0, max_tokens=16))
    if not gen.completions:
        return overlap_medoid(pool), "usc-overlap"
    reply = gen.completions[0].text
    match = _PICK.search(reply)
    if match and 1 <= int(match.group(1)) <= len(pool):
        return int(match.group(1)) - 1, "usc"
    return overlap_medoid(pool), "usc-overlap"


async def aggregate(problem: Problem, candidates: Sequence[Candidate], ctx: Context,
                    weights: Sequence[float] | None = None) -> Aggregation:
    """Vote over answers; for free-text problems, fall back to universal self-consistency.

    On a free-text problem the candidates without an answer form one group ("reply in
    text"); when that group outweighs every answer (every tool call, say), one of its members
    is chosen by USC, or by verifier score when the candidates are scored.
    """
    ws = list(weights) if weights is not None else [1.0] * len(candidates)
    answer, votes = vote(candidates, ws)
    method = "majority" if weights is None else "weighted"
    if problem.kind != "text":
        return Aggregation(answer, None, votes, method)
    pool = [(c, w) for c, w in zip(candidates, ws, strict=True)
            if c.answer is None and c.text.strip()]
    free_weight = sum(w for _, w in pool)
    if not pool or (answer is not None and votes[answer] >= free_weight):
        return Aggregation(answer, None, votes, method)
    texts = [c for c, _ in pool]
    if weights is not None and any(c.score is not None for c in texts):
        best = max(range(len(pool)), key=lambda i: (pool[i][1], -i))
        return Aggregation(None, texts[best].text, votes, "verifier")
    index, how = await universal_self_consistency(problem, texts, ctx)
    return Aggregation(None, texts[index].text, votes, how)


async def aggregated_result(problem: Problem, candidates: Sequence[Candidate], ctx: Context,
                            weights: Sequence[float] | None = None, **extra: object) -> Result:
    """The Result of voting strategies: :func:`aggregate`'s choice, its votes and method."""
    chosen = await aggregate(problem, candidates, ctx, weights)
    return ctx.result(problem, chosen.answer, candidates, text=chosen.text, votes=chosen.votes,
                      aggregation=chosen.method, **extra)
