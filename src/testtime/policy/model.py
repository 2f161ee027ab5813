"""The fitted policy: per predicted-difficulty bin and budget, the configuration to run."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from testtime.policy.choices import Choice
from testtime.policy.pools import built, probe_draw
from testtime.policy.probe import Feature

Statistic = Literal["agreement", "score"]
"""The one probe statistic of policy files written before difficulty features."""
Unit = Literal["tokens", "flops", "seconds"]
AGREEMENT: tuple[Feature, ...] = ("agreement",)


class Policy(BaseModel):
    """Per predicted-difficulty bin and budget, the configuration to run.

    A problem's difficulty score is ``intercept + sum(coef * feature)`` over its probe's
    ``features`` (higher: easier; a logistic fit of correctness on the training problems), cut
    at ``edges`` into bins (1 = easiest). A budget whose bins all choose one configuration
    runs it without probing.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    probe_k: int = Field(ge=1)
    features: list[Feature] = Field(default_factory=lambda: list(AGREEMENT),
                                    description="difficulty features the score combines")
    coef: list[float] = Field(default_factory=lambda: [1.0],
                              description="weight of each feature in the difficulty score")
    intercept: float = 0.0
    means: list[float] = Field(default_factory=lambda: [0.0], description="each feature's "
                               "training mean: what a feature that cannot be measured counts as")
    edges: list[float] = Field(description="difficulty score cut points, easiest bin first")
    feature: Literal["prompt_chars"] | None = Field(
        default=None, description="older files: question length in characters, splitting "
        "every bin in two")
    feature_cut: float | None = Field(
        default=None, description="older files: prompts up to this many characters go to the "
        "first half")
    probe_verifier: str | None = Field(
        default=None, description="verifier scoring the probe samples (their confidence); "
        "unset: the policy's verifier, else the model's confidence")
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
    feature_sets: dict[str, float] = Field(
        default_factory=dict, description="candidate feature sets → accuracy on inner folds of "
        "the training problems (the fit picked the best)")
    greedy: str | None = Field(
        default=None, description="greedy decoding's spec: at or above its cost a bin runs "
        "something else only where the training problems show it beats greedy")
    train: list[str] = Field(default_factory=list)
    heldout: list[str] = Field(default_factory=list)
    source: str = ""
    probe: str | None = Field(
        default=None, description="pooled strategy spec whose draws are the probe (e.g. "
        "no-thinking answers); unset: sampling at temperature and max_tokens")

    @model_validator(mode="before")
    @classmethod
    def _one_statistic(cls, value: Any) -> Any:
        """Files written before difficulty features (``"statistic": "agreement"``) load as
        that one feature with weight 1."""
        if isinstance(value, dict) and "statistic" in value:
            value = dict(value)
            stat = value.pop("statistic")
            value.setdefault("features", ["confidence" if stat == "score" else "agreement"])
            value.setdefault("coef", [1.0])
            value.setdefault("means", [0.0])
        return value

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
        return built(self.prober_spec)

    @field_validator("budgets")
    @classmethod
    def _numeric_order(cls, budgets: dict[str, list[Choice]]) -> dict[str, list[Choice]]:
        """Budgets kept in numeric order (``323, 646, 1293``), whatever order they came in."""
        try:
            return dict(sorted(budgets.items(), key=lambda kv: float(kv[0])))
        except ValueError:
            raise ValueError("budget keys must be numbers") from None

    @model_validator(mode="after")
    def _consistent(self) -> Policy:
        if (self.feature is None) != (self.feature_cut is None):
            raise ValueError("feature and feature_cut go together")
        if not self.features or len(set(self.features)) != len(self.features):
            raise ValueError("features must name at least one feature, each once")
        if not len(self.coef) == len(self.means) == len(self.features):
            raise ValueError("coef and means need one value per feature")
        return self

    @property
    def bins(self) -> int:
        """Number of difficulty bins."""
        return (len(self.edges) + 1) * (2 if self.feature_cut is not None else 1)

    def uses(self, feature: Feature) -> bool:
        """Whether the difficulty score reads ``feature``."""
        return feature in self.features

    def score(self, values: Mapping[str, float]) -> float:
        """The difficulty score of a probe's feature ``values`` (a missing feature counts as
        its training mean)."""
        return self.intercept + sum(
            c * float(values.get(f, m)) for f, c, m in zip(self.features, self.coef,
                                                            self.means, strict=True))

    def predict(self, values: Mapping[str, float], chars: float = 0.0) -> int:
        """Predicted bin (1 = easiest) of a problem whose probe gave feature ``values``; in
        older files with a prompt-length split, each bin splits into short (odd) and long
        (even) questions by ``chars``."""
        score = self.score(values)
        probe = 1 + sum(1 for e in self.edges if score < e)
        if self.feature_cut is None:
            return probe
        return 2 * probe - (0 if chars > self.feature_cut else 1)

    def probed(self, budget: str) -> bool:
        """Whether the row of ``budget`` (a key of ``budgets``) needs the probe: False when
        every bin runs the same configuration."""
        return len(set(self.budgets[budget])) > 1

    def row(self, budget: float) -> str:
        """The largest fitted budget not above ``budget`` (else the smallest), as its key."""
        fitted = list(self.budgets)
        return ([b for b in fitted if float(b) <= budget] or fitted[:1])[-1]

    def choose(self, bin_: int, budget: float) -> tuple[str, Choice]:
        """The choice for a bin under the largest fitted budget not above ``budget``."""
        key = self.row(budget)
        return key, self.budgets[key][bin_ - 1]

    def levels(self) -> dict[str, float]:
        """``low``/``medium``/``high`` → the smallest, middle and largest fitted budget."""
        keys = list(self.budgets)
        return {"low": float(keys[0]), "medium": float(keys[(len(keys) - 1) // 2]),
                "high": float(keys[-1])}

    def save(self, path: Path) -> None:
        """Write the policy as JSON."""
        path.write_text(self.model_dump_json(indent=1))
