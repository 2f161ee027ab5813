"""Choose the strategy for a request: ``testtime.strategy``, else the model name, else default.

Model names the gateway understands:

- the upstream model's id (``smollm2-135m``): the server's default strategy;
- a configured alias (``sc8``): its spec;
- ``SPEC@MODEL`` (``self-consistency:n=8@smollm2-135m``): SPEC (or an alias) on MODEL;
- a bare strategy spec (``self-consistency:n=8``);
- ``auto@MODEL``: the operator's compute-optimal policy (``adaptive``), whose budget follows
  the request's ``reasoning_effort`` (low, medium, high).

The operator's specs (default strategy, aliases) have full power; every other spec came from
the request and is built in the spec parser's client mode (:class:`ClientRules`).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from testtime.policy import (
    POLICY_STRATEGY,
    Policy,
    PolicyError,
    load_policy,
    policy_spec,
    read_policy,
    shipped_policies,
)
from testtime.registry import (
    CLIENT,
    ClientRules,
    SpecError,
    SpecForbidden,
    build,
    field_trust,
    redact,
    split_spec,
)
from testtime.serve.config import ServeConfig
from testtime.serve.errors import ApiError
from testtime.strategies import strategies
from testtime.strategies.base import StrategySettings

KEPT_STRATEGIES = 256


@dataclass(frozen=True)
class Route:
    """The strategy chosen for one request and the spec it was built from."""

    spec: str
    strategy: StrategySettings
    param: str = "model"
    client: bool = False

    @property
    def public(self) -> str:
        """The spec as clients see it (operator-only values hidden)."""
        return redact(strategies, self.spec)


class Router:
    """Maps request model names and extension fields to strategies, and lists the models."""

    def __init__(self, config: ServeConfig, upstream_model: str) -> None:
        self.config = config
        self.upstream_model = upstream_model
        self.client_rules: ClientRules = config.client_rules()
        self._cache: OrderedDict[tuple[str, bool], StrategySettings] = OrderedDict()
        self.created = int(time.time())
        self.auto: str | None = None
        self.auto_budgets: dict[str, float] = {}
        self.serve_policy(config.policy or (upstream_model if upstream_model in
                                            shipped_policies() else None),
                          explicit=config.policy is not None)
        operator = {"default_strategy": config.default_strategy,
                    **{f"strategies.{alias}": spec for alias, spec in config.strategies.items()},
                    **{f"reasoning_effort.{level}": preset.strategy
                       for level, preset in config.reasoning_effort.items()}}
        for param, spec in operator.items():
            self._build(spec, param, client=False).check()

    def serve_policy(self, ref: str | None, *, explicit: bool) -> None:
        """Offer ``auto@MODEL`` from the policy ``ref`` (checked now: PolicyError if unusable).

        Without an explicit policy, none is offered where the strategy that runs policies
        (``adaptive``) is not allowed; an explicit one there is a configuration error.
        """
        allowed = self.config.allowed_strategies
        if ref is None or (allowed is not None and POLICY_STRATEGY not in allowed):
            if ref is not None and explicit:
                raise PolicyError(f"policy {ref!r} is configured but allowed_strategies does "
                                  f"not include {POLICY_STRATEGY!r}, which serves it")
            self.auto, self.auto_budgets = None, {}
            return
        policy: Policy = read_policy(ref)
        load_policy(ref)  # from now on a broken edit keeps this version serving
        self.auto = ref
        self.auto_budgets = {**policy.levels(),
                             **{str(k): v for k, v in self.config.policy_budgets.items()}}

    def auto_route(self, level: str | None) -> Route:
        """The Route of ``auto@MODEL`` at a ``reasoning_effort`` level (default medium)."""
        if self.auto is None:
            raise ApiError(404, "auto@MODEL needs a compute-optimal policy, and this server "
                           "has none (the operator sets `policy`)", "model_not_found", "model")
        budget = self.auto_budgets.get(level or "medium")
        if budget is None:
            raise ApiError(400, f"reasoning_effort {level!r} has no budget for auto@MODEL "
                           f"(offered: {', '.join(self.auto_budgets)})", "unsupported_value",
                           "reasoning_effort")
        spec = policy_spec(self.auto, budget)
        return Route(spec=spec, strategy=self._build(spec, "model", client=False))

    def is_auto(self, model: str) -> bool:
        """Whether ``model`` names the compute-optimal policy (``auto@MODEL``, or ``auto``
        unless the operator has an alias of that name)."""
        if model == "auto":
            return "auto" not in self.config.strategies
        return model == f"auto@{self.upstream_model}"

    def resolve_effort(self, level: str) -> tuple[Route, str | None]:
        """The operator's preset for a ``reasoning_effort`` level: its Route and budget."""
        preset = self.config.reasoning_effort.get(level)  # type: ignore[call-overload]
        if preset is None:
            offered = ", ".join(self.config.reasoning_effort) or "none"
            raise ApiError(400, f"reasoning_effort {level!r} is not offered by this server "
                           f"(offered: {offered})", "unsupported_value", "reasoning_effort")
        route = Route(spec=preset.strategy, param="reasoning_effort",
                      strategy=self._build(preset.strategy, "reasoning_effort", client=False))
        return route, preset.budget

    def resolve(self, model: str, override: str | None = None) -> Route:
        """The Route for a request naming ``model`` with an optional strategy override.

        Aliases and the default strategy are the operator's; any other spec is the client's.
        """
        spec, client = self._spec_for_model(model)
        param = "model"
        if override is not None:
            param = "testtime.strategy"
            client = override not in self.config.strategies
            spec = self.config.strategies.get(override, override)
        return Route(spec=spec, strategy=self._build(spec, param, client=client), param=param,
                     client=client)

    def _spec_for_model(self, model: str) -> tuple[str, bool]:
        aliases = self.config.strategies
        if "@" in model:
            spec, _, target = model.rpartition("@")
            if target != self.upstream_model:
                raise ApiError(404, f"model {target!r} is not served here; this gateway serves "
                               f"{self.upstream_model!r}", "model_not_found", "model")
            return (aliases[spec], False) if spec in aliases else (spec, True)
        if model == self.upstream_model:
            return self.config.default_strategy, False
        if model in aliases:
            return aliases[model], False
        name = model.partition(":")[0].strip()
        if name in strategies.names():
            return model, True
        raise ApiError(404, f"model {model!r} does not exist; GET /v1/models lists the served "
                       "models and strategies", "model_not_found", "model")

    def _build(self, spec: str, param: str, *, client: bool) -> StrategySettings:
        key = (spec, client)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        try:
            name, _ = split_spec(spec)
            allowed = self.config.allowed_strategies
            if allowed is not None and name not in allowed:
                raise SpecError(f"strategy {name!r} is not enabled on this server; enabled: "
                                f"{', '.join(allowed) or 'none'}")
            strategy = build(strategies, spec, client=self.client_rules if client else None)
        except SpecForbidden as exc:
            raise ApiError(400, str(exc), exc.code, param) from None
        except SpecError as exc:
            raise ApiError(400, str(exc), "invalid_strategy", param) from None
        self._cache[key] = strategy
        while len(self._cache) > KEPT_STRATEGIES:
            self._cache.popitem(last=False)
        return strategy

    def models(self) -> list[dict[str, Any]]:
        """The ``/v1/models`` entries: the upstream model, aliases, and SPEC@MODEL forms."""
        def entry(model_id: str, spec: str) -> dict[str, Any]:
            return {"id": model_id, "object": "model", "created": self.created,
                    "owned_by": "testtime", "testtime": {"strategy": redact(strategies, spec)}}

        out = [entry(self.upstream_model, self.config.default_strategy)]
        if self.auto is not None:
            out.append(entry(f"auto@{self.upstream_model}",
                             policy_spec(self.auto, self.auto_budgets["medium"])))
        out += [entry(alias, spec) for alias, spec in self.config.strategies.items()]
        names = self.config.allowed_strategies or strategies.names()
        out += [entry(f"{name}@{self.upstream_model}", name) for name in names
                if name in strategies.names() and client_can_name(name)]
        return out


def client_can_name(name: str) -> bool:
    """Whether a client can ask for strategy ``name`` by itself (no operator-only option is
    required, as ``adaptive``'s policy file is)."""
    fields = strategies.get(name).model_fields
    return all(field_trust(f) is CLIENT for f in fields.values() if f.is_required())


def with_request_options(strategy: StrategySettings, *, rules: ClientRules | None = None,
                         **options: float | None) -> StrategySettings:
    """A fresh copy of ``strategy`` using the request's options (temperature, max_tokens,
    sampler settings) where the request sets them and the strategy has them.

    These are client-set values, so the operator's ``client_limits`` (``rules``) bound them.
    The copy is the request's own (its verifier and that verifier's score cache too), so
    nothing a request leaves behind outlives it.
    """
    fields = type(strategy).model_fields
    update = {k: v for k, v in options.items() if v is not None and k in fields}
    name = getattr(strategy, "registered_name", type(strategy).__name__)
    for key, value in update.items():
        try:
            if rules is not None:
                rules.check_bound("strategy", name, key, value)
        except SpecForbidden as exc:
            raise ApiError(400, str(exc), exc.code, key) from None
    try:
        return type(strategy).model_validate({**strategy.model_dump(), **update})
    except ValueError as exc:
        param = next(iter(update)) if len(update) == 1 else None
        raise ApiError(400, f"request options do not fit the strategy: {exc}",
                       "invalid_request", param) from None
