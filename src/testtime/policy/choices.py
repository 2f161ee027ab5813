"""A policy's choices: one strategy spec each, with the names the fit and reports show."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from testtime.policy.pools import built, draw_spec, pooled_families, spec_of_family
from testtime.registry import split_spec

POLICY_STRATEGY = "adaptive"
"""The registered strategy that runs a policy (which a policy cannot choose)."""


class Choice(BaseModel):
    """One candidate configuration: a strategy spec, as the spec parser reads it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    spec: str

    @model_validator(mode="before")
    @classmethod
    def _family_at_k(cls, value: Any) -> Any:
        """Policies written before specs (``{"family": "majority", "k": 8}``) still load."""
        if isinstance(value, dict) and "family" in value and "spec" not in value:
            return {"spec": f"{spec_of_family(value['family'])}:n={int(value['k'])}"}
        return value

    @field_validator("spec")
    @classmethod
    def _builds(cls, spec: str) -> str:
        name, _ = split_spec(spec)
        if name == POLICY_STRATEGY:
            raise ValueError(f"a policy cannot choose the {POLICY_STRATEGY} strategy itself")
        built(spec)
        return spec

    @property
    def name(self) -> str:
        """The registered strategy name."""
        return split_spec(self.spec)[0]

    @property
    def family(self) -> str:
        """The pool family of a pooled spec (``majority``, ``weighted``, ``best-of`` …), else
        the strategy name."""
        if self.draw is None:
            return self.name
        return pooled_families()[self.name]

    @property
    def k(self) -> int:
        """Samples of a pooled configuration (0 for other strategies)."""
        if self.draw is None:
            return 0
        return int(getattr(built(self.spec), "n", 1))

    @property
    def label(self) -> str:
        """Short name: ``majority@8`` for sampling, else the spec itself."""
        return f"{self.family}@{self.k}" if self.k else self.spec

    def strategy(self) -> Any:
        """The built strategy (built once per spec)."""
        return built(self.spec)

    @property
    def draw(self) -> str | None:
        """:func:`draw_spec` of a pooled configuration (None for other strategies)."""
        return draw_spec(self.spec)


def distinct_labels(choices: Iterable[Choice]) -> dict[Choice, str]:
    """Each choice's label, or its spec where two choices' labels coincide (majority@4 drawn
    at two temperatures)."""
    unique = list(dict.fromkeys(choices))
    counts = Counter(c.label for c in unique)
    return {c: c.label if counts[c.label] == 1 else c.spec for c in unique}
