"""The fitted policy: per predicted-difficulty bin and budget, the configuration to run."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from testtime.policy.choices import Choice
from testtime.policy.pools import built, probe_draw

Statistic = Literal["agreement", "score"]
Unit = Literal["tokens", "flops", "seconds"]


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
