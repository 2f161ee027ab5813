"""Compute-optimal adaptive scaling (after Snell et al., 2024).

Probe the problem with a few samples, predict its difficulty bin from how much they agree (or
from their mean verifier score), then run the configuration a fitted policy chose for that bin
and budget. The probe samples are reused by the chosen configuration, and everything is spent
through one Context, so the probe's cost is counted against the same Budget.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from testtime.answers import group_answers
from testtime.strategies.base import Context, StrategySettings, strategies
from testtime.strategies.voting import vote
from testtime.types import Candidate, Problem, Result
from testtime.verifiers.base import make_verifier
from testtime.verifiers.confidence import ConfidenceVerifier

Family = Literal["majority", "weighted", "best-of"]
Statistic = Literal["agreement", "score"]


class PolicyError(ValueError):
    """A policy file that is missing or malformed."""


class Choice(BaseModel):
    """A sampling configuration: how to aggregate k samples."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    family: Family
    k: int = Field(ge=1)

    @property
    def label(self) -> str:
        """Short name, e.g. ``majority@8``."""
        return f"{self.family}@{self.k}"


class Policy(BaseModel):
    """Per predicted-difficulty bin and budget, the configuration to run."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    probe_k: int = Field(ge=1)
    statistic: Statistic = "agreement"
    edges: list[float] = Field(description="probe statistic cut points, easiest bin first")
    budgets: dict[str, list[Choice]] = Field(
        description="generated-token budget per problem → one Choice per bin (1 = easiest)")
    temperature: float = 0.8
    max_tokens: int = 512
    verifier: str | None = None
    train: list[str] = Field(default_factory=list)
    heldout: list[str] = Field(default_factory=list)
    source: str = ""

    @field_validator("budgets")
    @classmethod
    def _numeric_order(cls, budgets: dict[str, list[Choice]]) -> dict[str, list[Choice]]:
        """Budgets kept in numeric order (``323, 646, 1293``), whatever order they came in."""
        try:
            return dict(sorted(budgets.items(), key=lambda kv: float(kv[0])))
        except ValueError:
            raise ValueError("budget keys must be numbers of tokens") from None

    @property
    def bins(self) -> int:
        """Number of difficulty bins."""
        return len(self.edges) + 1

    def predict(self, statistic: float) -> int:
        """Predicted bin (1 = easiest) of a problem whose probe gave ``statistic``."""
        return 1 + sum(1 for e in self.edges if statistic < e)

    def choose(self, bin_: int, budget: float) -> tuple[str, Choice]:
        """The choice for a bin under the largest fitted budget not above ``budget``."""
        fitted = sorted(self.budgets, key=float)
        fits = [b for b in fitted if float(b) <= budget] or fitted[:1]
        key = fits[-1]
        return key, self.budgets[key][bin_ - 1]

    def save(self, path: Path) -> None:
        """Write the policy as JSON."""
        path.write_text(self.model_dump_json(indent=1))


@lru_cache(maxsize=16)
def load_policy(path: str) -> Policy:
    """Read a policy file written by ``testtime fit-policy``; PolicyError if unusable."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise PolicyError(f"policy file {path!r} does not exist")
    try:
        policy = Policy.model_validate(json.loads(p.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, ValidationError) as exc:
        first = str(exc).splitlines()[0]
        raise PolicyError(f"policy file {path!r} is not a valid policy: {first}") from None
    if any(len(row) != policy.bins for row in policy.budgets.values()) or not policy.budgets:
        raise PolicyError(f"policy file {path!r}: each budget needs one choice per bin")
    return policy


def agreement(answers: Sequence[str | None]) -> float:
    """Share of samples in the most common answer class (0 when none has an answer)."""
    classes = [c for c in group_answers(list(answers)) if c is not None]
    if not answers or not classes:
        return 0.0
    return max(classes.count(c) for c in set(classes)) / len(answers)


def mean_score(scores: Sequence[float | None]) -> float:
    """Mean verifier score of the probe samples."""
    vals = [s for s in scores if s is not None]
    return sum(vals) / len(vals) if vals else 0.0


def aggregate(choice: Choice, candidates: Sequence[Candidate]
              ) -> tuple[str | None, dict[str, float]]:
    """The answer a configuration gives from its candidates."""
    if choice.family == "majority":
        return vote(candidates)
    weights = [c.score.value if c.score else 0.0 for c in candidates]
    if choice.family == "weighted":
        return vote(candidates, weights)
    best = max(range(len(candidates)),
               key=lambda i: (candidates[i].has_answer, weights[i], -i), default=None)
    return (candidates[best].answer if best is not None else None), {}


@strategies.register("adaptive")
class Adaptive(StrategySettings):
    """Probe, predict the difficulty bin, then run the policy's choice for that bin and budget."""

    policy: str = Field(description="policy JSON written by `testtime fit-policy`")
    budget: float = Field(gt=0, description="generated tokens per problem the policy may plan")

    async def run(self, problem: Problem, ctx: Context) -> Result:
        """Probe, choose, sample the rest, aggregate."""
        policy = load_policy(self.policy)
        spec = self.verifier or policy.verifier
        ctx.verifier = make_verifier(spec) if spec else ctx.verifier or ConfidenceVerifier()
        temp, max_tokens = policy.temperature, policy.max_tokens
        cands = await ctx.sample(problem, policy.probe_k, temperature=temp, max_tokens=max_tokens)
        if policy.statistic == "score":
            cands = await ctx.score(problem, cands)
            stat = mean_score([c.score.value if c.score else None for c in cands])
        else:
            stat = agreement([c.answer for c in cands])
        bin_ = policy.predict(stat)
        row, choice = policy.choose(bin_, self.budget)
        if choice.k > len(cands) and not ctx.exhausted:
            cands += await ctx.sample(problem, choice.k - len(cands), temperature=temp,
                                      max_tokens=max_tokens)
        if choice.family != "majority" and any(c.score is None for c in cands):
            cands = await ctx.score(problem, cands)
        answer, votes = aggregate(choice, cands)
        return ctx.result(problem, answer, cands, votes=votes, probe_statistic=stat,
                          predicted_bin=bin_, choice=choice.label, policy_budget=row)
