"""Compute-optimal adaptive scaling (after Snell et al., 2024), over every strategy family.

Probe the problem with a few samples, predict its difficulty bin from how much they agree (or
from their mean verifier score), then run the strategy a fitted policy chose for that bin and
budget: majority, weighted or best-of at some k, no-thinking answers, early stopping, beam
search, revision, any registered spec. The probe draws like any pooled strategy (the policy's
``probe``): a few no-thinking answers cost a handful of tokens, and agreeing ones mark a
question that needs no chain of thought. Everything is spent through one Context, so the probe
counts against the same Budget, and the probe's samples are offered to the chosen strategy,
which reuses them when it samples the same prompt with the same settings (majority@8 after a
sampled probe draws 8 - probe more).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from testtime.answers import extract_answer, group_answers
from testtime.chat import split_reasoning
from testtime.registry import SpecError, split_spec
from testtime.strategies.base import Context, StrategySettings, make_strategy, strategies
from testtime.strategies.voting import vote
from testtime.types import Candidate, Problem, Result
from testtime.verifiers.confidence import ConfidenceVerifier
from testtime.verifiers.make import make_verifier

Statistic = Literal["agreement", "score"]
Unit = Literal["tokens", "flops", "seconds"]
SAMPLING_FAMILIES = {"self-consistency": "majority", "weighted-vote": "weighted",
                     "best-of-n": "best-of"}
"""Sampling strategies whose k-sample runs are scored from one sampled pool, by family."""
SPEC_OF_FAMILY = {v: k for k, v in SAMPLING_FAMILIES.items()}
POOLED = {**SAMPLING_FAMILIES, "no-thinking": "no-thinking"}
"""Strategies whose k-sample runs are scored from a pool of their own draws, by family."""
DRAW_FIELDS = ("temperature", "max_tokens", "top_p", "top_k", "min_p", "repeat_penalty",
               "style", "answer_cue")
"""What decides how a pooled strategy draws one sample (not n, not the vote)."""
POLICY_DIR = Path(__file__).resolve().parent.parent / "policies"
log = logging.getLogger("testtime.policy")


class PolicyError(ValueError):
    """A policy file that is missing or malformed."""


@lru_cache(maxsize=256)
def _built(spec: str) -> Any:
    return make_strategy(spec)


class Choice(BaseModel):
    """One candidate configuration: a strategy spec, as the spec parser reads it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    spec: str

    @model_validator(mode="before")
    @classmethod
    def _family_at_k(cls, value: Any) -> Any:
        """Policies written before specs (``{"family": "majority", "k": 8}``) still load."""
        if isinstance(value, dict) and "family" in value and "spec" not in value:
            return {"spec": f"{SPEC_OF_FAMILY[value['family']]}:n={int(value['k'])}"}
        return value

    @field_validator("spec")
    @classmethod
    def _builds(cls, spec: str) -> str:
        name, _ = split_spec(spec)
        if name == "adaptive":
            raise ValueError("a policy cannot choose the adaptive strategy itself")
        _built(spec)
        return spec

    @property
    def name(self) -> str:
        """The registered strategy name."""
        return split_spec(self.spec)[0]

    @property
    def family(self) -> str:
        """``majority``/``weighted``/``best-of`` for sampling specs, else the strategy name."""
        return POOLED.get(self.name, self.name)

    @property
    def k(self) -> int:
        """Samples of a pooled configuration (0 for other strategies)."""
        if self.name not in POOLED:
            return 0
        return int(getattr(_built(self.spec), "n", 1))

    @property
    def label(self) -> str:
        """Short name: ``majority@8`` for sampling, else the spec itself."""
        return f"{self.family}@{self.k}" if self.k else self.spec

    def strategy(self) -> Any:
        """The built strategy (built once per spec)."""
        return _built(self.spec)

    @property
    def draw(self) -> str | None:
        """:func:`draw_spec` of a pooled configuration (None for other strategies)."""
        return draw_spec(self.spec)


def draw_spec(spec: str) -> str | None:
    """How one sample of a pooled strategy is drawn, as a spec: ``self-consistency`` (for every
    vote family) or ``no-thinking`` with every setting of :data:`DRAW_FIELDS`. Specs with the
    same draw spec sample alike, so one pool scores them all; None if ``spec`` does not pool."""
    name, _ = split_spec(spec)
    if name not in POOLED:
        return None
    built = _built(spec)
    items = [f"{key}={_quoted(str(getattr(built, key)))}" for key in DRAW_FIELDS
             if getattr(built, key, None) is not None]
    return f"{'no-thinking' if name == 'no-thinking' else 'self-consistency'}:{','.join(items)}"


def probe_draw(probe: str) -> str:
    """The draw spec of a probe; ValueError if ``probe`` is not a pooled sampling strategy."""
    draw = draw_spec(probe)
    if draw is None:
        raise ValueError(f"probe {probe!r} is not a pooled sampling strategy "
                         f"({', '.join(sorted(POOLED))})")
    return draw


def distinct_labels(choices: Iterable[Choice]) -> dict[Choice, str]:
    """Each choice's label, or its spec where two choices' labels coincide (majority@4 drawn
    at two temperatures)."""
    unique = list(dict.fromkeys(choices))
    counts = Counter(c.label for c in unique)
    return {c: c.label if counts[c.label] == 1 else c.spec for c in unique}


def sampler_options(source: str, *, verifier: bool) -> list[str]:
    """``key=value`` items of ``source``'s sampler settings (and its verifier, if asked)."""
    _, opts = split_spec(source)
    keep = {"temperature", "max_tokens", "top_p", "top_k", "min_p", "repeat_penalty"}
    if verifier:
        keep.add("verifier")
    return [f"{key}={_quoted(v)}" for key, v in opts.items() if key in keep]


def sampling_spec(source: str, family: str, k: int) -> str:
    """The spec of ``family`` at k samples drawing like ``source`` (with its verifier, for the
    families that score)."""
    if family == "no-thinking":
        _, opts = split_spec(source)
        items = [f"{key}={_quoted(v)}" for key, v in opts.items() if key not in ("n", "verifier")]
        return ",".join([f"no-thinking:n={k}", *items])
    items = [f"n={k}", *sampler_options(source, verifier=family != "majority")]
    return f"{SPEC_OF_FAMILY[family]}:{','.join(items)}"


def _quoted(value: str) -> str:
    return f"[{value}]" if any(ch in value for ch in ",:=") else value


class Policy(BaseModel):
    """Per predicted-difficulty bin and budget, the configuration to run."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    probe_k: int = Field(ge=1)
    statistic: Statistic = "agreement"
    edges: list[float] = Field(description="probe statistic cut points, easiest bin first")
    feature: Literal["prompt_chars"] | None = Field(
        default=None, description="a cheap prompt feature splitting every probe bin in two")
    feature_cut: float | None = Field(
        default=None, description="prompts up to this many characters go to the first half")
    unit: Unit = Field(default="tokens", description="what budgets count: generated + verifier "
                       "tokens, FLOPs or seconds per problem, probe included")
    budgets: dict[str, list[Choice]] = Field(
        description="budget per problem (in ``unit``) → one Choice per bin (1 = easiest)")
    temperature: float = 0.8
    max_tokens: int = 512
    verifier: str | None = None
    table: dict[str, dict[str, list[float]]] = Field(
        default_factory=dict,
        description="bin → configuration → [accuracy, cost, problems] on the training split")
    train: list[str] = Field(default_factory=list)
    heldout: list[str] = Field(default_factory=list)
    source: str = ""
    probe: str | None = Field(
        default=None, description="pooled strategy spec whose draws are the probe (e.g. "
        "no-thinking answers); unset: sampling at temperature and max_tokens")

    @field_validator("probe")
    @classmethod
    def _probe_draws(cls, probe: str | None) -> str | None:
        if probe is not None:
            probe_draw(probe)
        return probe

    def measured(self, bin_: int, choice: Choice) -> list[float] | None:
        """[accuracy, cost, problems] of ``choice`` in ``bin_`` on the training split (keyed
        by its label, or by its spec where two pools' labels coincide)."""
        row = self.table.get(str(bin_), {})
        return row.get(choice.label) or row.get(choice.spec)

    @property
    def prober_spec(self) -> str:
        """The spec drawing the probe: ``probe``, or sampling at the policy's settings."""
        return self.probe or (f"self-consistency:temperature={self.temperature:g},"
                              f"max_tokens={self.max_tokens}")

    def prober(self) -> Any:
        """The strategy whose :meth:`draw` samples the probe."""
        return _built(self.prober_spec)

    @field_validator("budgets")
    @classmethod
    def _numeric_order(cls, budgets: dict[str, list[Choice]]) -> dict[str, list[Choice]]:
        """Budgets kept in numeric order (``323, 646, 1293``), whatever order they came in."""
        try:
            return dict(sorted(budgets.items(), key=lambda kv: float(kv[0])))
        except ValueError:
            raise ValueError("budget keys must be numbers") from None

    @model_validator(mode="after")
    def _feature_has_cut(self) -> Policy:
        if (self.feature is None) != (self.feature_cut is None):
            raise ValueError("feature and feature_cut go together")
        return self

    @property
    def bins(self) -> int:
        """Number of difficulty bins."""
        return (len(self.edges) + 1) * (2 if self.feature_cut is not None else 1)

    def predict(self, statistic: float, chars: float = 0.0) -> int:
        """Predicted bin (1 = easiest) of a problem whose probe gave ``statistic``; with a
        prompt feature, each probe bin splits into short (odd) and long (even) prompts."""
        probe = 1 + sum(1 for e in self.edges if statistic < e)
        if self.feature_cut is None:
            return probe
        return 2 * probe - (0 if chars > self.feature_cut else 1)

    def choose(self, bin_: int, budget: float) -> tuple[str, Choice]:
        """The choice for a bin under the largest fitted budget not above ``budget``."""
        fitted = list(self.budgets)
        fits = [b for b in fitted if float(b) <= budget] or fitted[:1]
        key = fits[-1]
        return key, self.budgets[key][bin_ - 1]

    def levels(self) -> dict[str, float]:
        """``low``/``medium``/``high`` → the smallest, middle and largest fitted budget."""
        keys = list(self.budgets)
        return {"low": float(keys[0]), "medium": float(keys[(len(keys) - 1) // 2]),
                "high": float(keys[-1])}

    def save(self, path: Path) -> None:
        """Write the policy as JSON."""
        path.write_text(self.model_dump_json(indent=1))


def shipped_policies() -> list[str]:
    """Names of the policies that ship with testtime (one per model)."""
    return sorted(p.stem for p in POLICY_DIR.glob("*.json"))


def policy_path(ref: str) -> Path:
    """The file of a policy reference: a shipped policy's name (a model id), else a path."""
    if "/" not in ref and not ref.endswith(".json"):
        shipped = POLICY_DIR / f"{ref}.json"
        if shipped.is_file():
            return shipped
        raise PolicyError(f"no shipped policy named {ref!r} (shipped: "
                          f"{', '.join(shipped_policies()) or 'none'}); give a policy file path")
    return Path(ref).expanduser()


def read_policy(ref: str) -> Policy:
    """Read and check a policy now (no cache); PolicyError if it is unusable."""
    p = policy_path(ref)
    if not p.is_file():
        raise PolicyError(f"policy file {ref!r} does not exist")
    try:
        policy = Policy.model_validate(json.loads(p.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, ValidationError, SpecError) as exc:
        first = str(exc).splitlines()[0]
        detail = str(exc).splitlines()[1:3] if isinstance(exc, ValidationError) else []
        raise PolicyError(f"policy file {ref!r} is not a valid policy: "
                          f"{' '.join([first, *[d.strip() for d in detail]])}") from None
    if not policy.budgets or any(len(row) != policy.bins for row in policy.budgets.values()):
        raise PolicyError(f"policy file {ref!r}: each budget needs one choice per bin")
    return policy


_loaded: dict[str, tuple[tuple[int, int], Policy]] = {}


def load_policy(ref: str) -> Policy:
    """The policy at ``ref``, reread whenever its file changes on disk.

    A file that changes into something unusable keeps the last good policy serving (with a
    warning in the log); with no good version yet, PolicyError.
    """
    p = policy_path(ref)
    try:
        st = p.stat()
        stamp = (st.st_mtime_ns, st.st_size)
    except OSError:
        stamp = (-1, -1)
    held = _loaded.get(ref)
    if held is not None and held[0] == stamp:
        return held[1]
    try:
        policy = read_policy(ref)
    except PolicyError as exc:
        if held is None:
            raise
        log.warning("policy file changed but cannot be used; keeping the last good one",
                    extra={"error": str(exc)})
        _loaded[ref] = (stamp, held[1])
        return held[1]
    _loaded[ref] = (stamp, policy)
    return policy


def agreement(answers: Sequence[str | None]) -> float:
    """Share of samples in the most common answer class (0 when none has an answer)."""
    classes = [c for c in group_answers(list(answers)) if c is not None]
    if not answers or not classes:
        return 0.0
    return max(classes.count(c) for c in set(classes)) / len(answers)


def probe_answers(candidates: Sequence[Candidate]) -> list[str | None]:
    """The answers the agreement probe compares: the candidates' own, or, when none has one
    (a free-text chat reply marks no final answer), the last number of each reply."""
    if any(c.answer is not None for c in candidates):
        return [c.answer for c in candidates]
    return [extract_answer(split_reasoning(c.text)[1] or c.text) for c in candidates]


def mean_score(scores: Sequence[float | None]) -> float:
    """Mean verifier score of the probe samples."""
    vals = [s for s in scores if s is not None]
    return sum(vals) / len(vals) if vals else 0.0


@strategies.register("adaptive")
class Adaptive(StrategySettings):
    """Probe, predict the difficulty bin, then run the policy's choice for that bin and budget."""

    policy: str = Field(description="policy JSON written by `testtime fit-policy`, or the name "
                        "of a shipped policy")
    budget: float = Field(gt=0, description="budget per problem the policy may plan, in the "
                          "policy's unit (generated tokens unless it says otherwise)")

    def check(self) -> None:
        """PolicyError unless the policy loads."""
        load_policy(self.policy)

    async def run(self, problem: Problem, ctx: Context) -> Result:
        """Probe, choose, then run the choice on the same Context with the probe on offer."""
        policy = load_policy(self.policy)
        spec = self.verifier or policy.verifier
        ctx.verifier = make_verifier(spec) if spec else ctx.verifier or ConfidenceVerifier()
        prober = policy.prober()
        probe = await prober.draw(problem, ctx, policy.probe_k)
        if policy.statistic == "score":
            probe = await ctx.score(problem, probe)
            stat = mean_score([c.score.value if c.score else None for c in probe])
        else:
            stat = agreement(probe_answers(probe))
        bin_ = policy.predict(stat, len(problem.question))
        row, choice = policy.choose(bin_, self.budget)
        chosen: dict[str, Any] = {"probe_statistic": round(stat, 4), "predicted_bin": bin_,
                  "choice": choice.label, "choice_spec": choice.spec, "policy_budget": row}
        if ctx.exhausted:
            answer, votes = vote(probe)
            return ctx.result(problem, answer, probe, votes=votes, **chosen)
        prober.offer_drawn(problem, ctx, probe)
        result = await choice.strategy().run(problem, ctx)
        return result.model_copy(update={"extra": {**result.extra, **chosen}})
