"""Choose the strategy for a request: ``testtime.strategy``, else the model name, else default.

Model names the gateway understands:

- the upstream model's id (``smollm2-135m``): the server's default strategy;
- a configured alias (``sc8``): its spec;
- ``SPEC@MODEL`` (``self-consistency:n=8@smollm2-135m``): SPEC (or an alias) on MODEL;
- a bare strategy spec (``self-consistency:n=8``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from testtime.registry import SpecError, split_spec
from testtime.serve.config import ServeConfig
from testtime.serve.errors import ApiError
from testtime.strategies import make_strategy, strategies


@dataclass(frozen=True)
class Route:
    """The strategy chosen for one request and the spec it was built from."""

    spec: str
    strategy: Any


class Router:
    """Maps request model names and extension fields to strategies, and lists the models."""

    def __init__(self, config: ServeConfig, upstream_model: str) -> None:
        self.config = config
        self.upstream_model = upstream_model
        self._cache: dict[str, Any] = {}
        self.created = int(time.time())
        self._build(config.default_strategy, "default_strategy")
        for alias, spec in config.strategies.items():
            self._build(spec, f"strategies.{alias}")

    def resolve(self, model: str, override: str | None = None) -> Route:
        """The Route for a request naming ``model`` with an optional strategy override."""
        spec = self._spec_for_model(model)
        param = "model"
        if override is not None:
            spec, param = self.config.strategies.get(override, override), "testtime.strategy"
        return Route(spec=spec, strategy=self._build(spec, param))

    def _spec_for_model(self, model: str) -> str:
        aliases = self.config.strategies
        if "@" in model:
            spec, _, target = model.rpartition("@")
            if target != self.upstream_model:
                raise ApiError(404, f"model {target!r} is not served here; this gateway serves "
                               f"{self.upstream_model!r}", "model_not_found", "model")
            return aliases.get(spec, spec)
        if model == self.upstream_model:
            return self.config.default_strategy
        if model in aliases:
            return aliases[model]
        name = model.partition(":")[0].strip()
        if name in strategies.names():
            return model
        raise ApiError(404, f"model {model!r} does not exist; GET /v1/models lists the served "
                       "models and strategies", "model_not_found", "model")

    def _build(self, spec: str, param: str) -> Any:
        if spec in self._cache:
            return self._cache[spec]
        try:
            name, _ = split_spec(spec)
            allowed = self.config.allowed_strategies
            if allowed is not None and name not in allowed:
                raise SpecError(f"strategy {name!r} is not enabled on this server; enabled: "
                                f"{', '.join(allowed) or 'none'}")
            strategy = make_strategy(spec)
        except SpecError as exc:
            raise ApiError(400, str(exc), "invalid_strategy", param) from None
        if len(self._cache) < 1024:
            self._cache[spec] = strategy
        return strategy

    def models(self) -> list[dict[str, Any]]:
        """The ``/v1/models`` entries: the upstream model, aliases, and SPEC@MODEL forms."""
        def entry(model_id: str, spec: str) -> dict[str, Any]:
            return {"id": model_id, "object": "model", "created": self.created,
                    "owned_by": "testtime", "testtime": {"strategy": spec}}

        out = [entry(self.upstream_model, self.config.default_strategy)]
        out += [entry(alias, spec) for alias, spec in self.config.strategies.items()]
        names = self.config.allowed_strategies or strategies.names()
        out += [entry(f"{name}@{self.upstream_model}", name) for name in names
                if name in strategies.names()]
        return out


def with_request_options(strategy: Any, **options: float | None) -> Any:
    """A copy of ``strategy`` using the request's options (temperature, max_tokens, sampler
    settings) where the request sets them and the strategy has them."""
    fields = type(strategy).model_fields
    update = {k: v for k, v in options.items() if v is not None and k in fields}
    if not update:
        return strategy
    try:
        return type(strategy).model_validate({**strategy.model_dump(), **update})
    except ValueError as exc:
        raise ApiError(400, f"request options do not fit the strategy: {exc}",
                       "invalid_request") from None
