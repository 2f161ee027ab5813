"""Gateway settings: defaults, then a TOML/JSON file, then ``TESTTIME_SERVE_*`` variables."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from testtime.budget import Budget
from testtime.models import DEFAULT_MODEL
from testtime.registry import Bound, ClientRules
from testtime.tools import Tool, enable
from testtime.verifiers import verifiers

ENV_PREFIX = "TESTTIME_SERVE_"
KEYS_ENV = "TESTTIME_API_KEYS"


class ConfigError(ValueError):
    """A config file or environment variable that cannot be used."""


class KeyConfig(BaseModel):
    """One API key's limits: a display name, a lifetime token cap and rate limits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    budget_tokens: int | None = Field(default=None, ge=1,
                                      description="total tokens this key may cause")
    rpm: int | None = Field(default=None, ge=1, description="requests per minute")
    tpm: int | None = Field(default=None, ge=1, description="tokens per minute")
    concurrency: int | None = Field(default=None, ge=1,
                                    description="requests of this key running at once")


class Limit(BaseModel):
    """Inclusive bounds on a client-settable option (a bare number in the config is ``max``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min: float | None = None
    max: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare_number(cls, value: Any) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return {"max": value}
        return value

    @model_validator(mode="after")
    def _ordered(self) -> Limit:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} is above max {self.max:g}")
        return self

    def bound(self) -> Bound:
        """The registry's Bound for these limits."""
        return Bound(self.min, self.max)


class ReasoningPreset(BaseModel):
    """What a request's ``reasoning_effort`` level buys: a strategy and, optionally, a budget
    (tighter than the server's ``request_budget``, never looser)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    strategy: str
    budget: str | None = None

    @field_validator("budget")
    @classmethod
    def _budget_parses(cls, value: str | None) -> str | None:
        if value is not None:
            Budget.parse(value)
        return value


class ReplicaConfig(BaseModel):
    """How many replicas of one Ray Serve deployment run, and what each one is given."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_replicas: int = Field(default=1, ge=1, description="fixed replica count")
    min_replicas: int | None = Field(default=None, ge=0,
                                     description="autoscaling lower bound (with max_replicas)")
    max_replicas: int | None = Field(default=None, ge=1, description="autoscaling upper bound")
    num_cpus: float = Field(default=1.0, ge=0, description="CPUs reserved per replica")
    num_gpus: float = Field(default=0.0, ge=0, description="GPUs reserved per replica")
    max_ongoing_requests: int = Field(default=16, ge=1,
                                      description="calls one replica serves at once")

    @model_validator(mode="after")
    def _bounds(self) -> ReplicaConfig:
        if (self.min_replicas is None) != (self.max_replicas is None):
            raise ValueError("set both min_replicas and max_replicas, or neither")
        if self.min_replicas is not None and self.max_replicas is not None \
                and self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas is above max_replicas")
        return self

    @property
    def most(self) -> int:
        """The largest number of replicas this deployment may have."""
        return self.max_replicas if self.max_replicas is not None else self.num_replicas


class RayServeConfig(BaseModel):
    """The ``[serve.ray]`` table: replicas of the gateway and of the engine on Ray Serve."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gateway: ReplicaConfig = Field(default_factory=lambda: ReplicaConfig(
        num_replicas=2, num_cpus=0.5, max_ongoing_requests=64))
    engine: ReplicaConfig = Field(default_factory=ReplicaConfig)
    engine_retries: int = Field(default=2, ge=0,
                                description="times a call is retried on another engine "
                                            "replica when the one serving it dies")
    num_cpus: int | None = Field(default=None, ge=1,
                                 description="CPUs of a local cluster (default: all)")
    num_gpus: int | None = Field(default=None, ge=0,
                                 description="GPUs of a local cluster (default: detected)")


class ToolsConfig(BaseModel):
    """The ``[tools]`` table: the tools strategies may call on this server (run server-side).

    ``enabled`` lists built-in or registered names, with the operator's options where a tool
    takes them (``python:timeout=10``), and ``module:function`` callables to import. The
    operator's config is trusted; a request may only ask for enabled tools by name.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: list[str] = Field(default_factory=list,
                               description="tools strategies may call, e.g. [\"calculator\", "
                                           "\"python:timeout=10\", \"mypkg.tools:lookup\"]")

    @field_validator("enabled")
    @classmethod
    def _loadable(cls, value: list[str]) -> list[str]:
        enable(value)
        return value

    def resolve(self) -> dict[str, Tool]:
        """The enabled tools, by name (imported and checked)."""
        return enable(self.enabled)


DEFAULT_VERIFIERS = ["confidence", "judge", "judge-select", "rpc"]


class ServeConfig(BaseModel):
    """Everything ``testtime serve`` can be told."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    backend: str = f"embedded:{DEFAULT_MODEL}"
    model_name: str | None = Field(default=None,
                                   description="id of the upstream model (default: derived)")
    default_strategy: str = "single"
    strategies: dict[str, str] = Field(default_factory=dict,
                                       description="alias → strategy spec, listed as models")
    allowed_strategies: list[str] | None = Field(
        default=None, description="strategy names clients may ask for (default: all but "
        "those that run model-written code, which the operator lists to allow)")
    allowed_verifiers: list[str] = Field(
        default_factory=lambda: list(DEFAULT_VERIFIERS),
        description="verifier names a request's strategy spec may nest")
    client_limits: dict[str, Limit] = Field(
        default_factory=dict,
        description="bounds on options a request sets: OPTION or NAME.OPTION → max or "
                    "{min, max}, e.g. n = 16, max_tokens = 2048, \"beam.width\" = 8")
    reasoning_effort: dict[Literal["none", "minimal", "low", "medium", "high"],
                           ReasoningPreset] = Field(
        default_factory=dict,
        description="reasoning_effort level → {strategy, budget}, e.g. "
                    "high = {strategy = \"self-consistency:n=16\", budget = \"tokens=32768\"}; "
                    "a level not listed here is refused")
    policy: str | None = Field(
        default=None,
        description="compute-optimal policy served as model auto@MODEL: a policy JSON from "
                    "`testtime fit-policy` or a shipped policy's name; default: the shipped "
                    "policy of the served model, if there is one and adaptive is allowed")
    policy_budgets: dict[Literal["none", "minimal", "low", "medium", "high"], float] = Field(
        default_factory=dict,
        description="auto@MODEL's budget (in the policy's unit) per reasoning_effort level; "
                    "default: low, medium, high = the policy's smallest, middle and largest "
                    "fitted budget; medium when the request names no level")
    keepalive: float = Field(default=10.0, gt=0, le=300,
                             description="seconds between SSE keep-alive comments while a "
                                         "streamed request's strategy works")
    api_keys: dict[str, KeyConfig] = Field(default_factory=dict)
    key_defaults: KeyConfig = Field(
        default_factory=KeyConfig,
        description="limits of every key whose own entry does not set them (budget_tokens, "
                    "rpm, tpm, concurrency), e.g. for keys given by TESTTIME_API_KEYS")
    request_budget: str = Field(default="tokens=16384",
                                description="per-request Budget, e.g. tokens=8192,calls=64")
    max_body_bytes: int = Field(default=1_000_000, ge=256)
    max_choices: int = Field(default=4, ge=1, le=64)
    max_concurrency: int = Field(default=8, ge=1)
    max_queue: int = Field(default=64, ge=0)
    queue_timeout: float = Field(default=30.0, gt=0)
    request_timeout: float = Field(default=300.0, gt=0)
    log_level: str = "INFO"
    ray: RayServeConfig = Field(default_factory=RayServeConfig,
                                description="replicas and resources under `serve --ray`")
    tools: ToolsConfig = Field(default_factory=ToolsConfig,
                               description="tools strategies may call on this server")

    @field_validator("allowed_verifiers")
    @classmethod
    def _verifiers_exist(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(verifiers.names()))
        if unknown:
            raise ValueError(f"unknown verifier(s) {', '.join(unknown)}; known: "
                             f"{', '.join(verifiers.names())}")
        return value

    @field_validator("policy_budgets")
    @classmethod
    def _positive(cls, value: dict[str, float]) -> dict[str, float]:
        bad = [k for k, v in value.items() if not v > 0]
        if bad:
            raise ValueError(f"budgets must be positive numbers ({', '.join(bad)})")
        return value

    @field_validator("request_budget")
    @classmethod
    def _budget_parses(cls, value: str) -> str:
        Budget.parse(value)
        return value

    def budget(self) -> Budget:
        """The per-request Budget."""
        return Budget.parse(self.request_budget)

    def keys(self) -> dict[str, KeyConfig]:
        """Each key's limits: its own settings, the rest from ``key_defaults``."""
        defaults = self.key_defaults.model_dump(exclude={"name"})
        return {key: KeyConfig.model_validate({**defaults, **cfg.model_dump(
                    exclude_unset=True)}) for key, cfg in self.api_keys.items()}

    def client_rules(self) -> ClientRules:
        """What specs that arrive in requests may choose (the spec parser's client mode)."""
        from testtime.strategies import strategies

        allowed = self.allowed_strategies
        if allowed is None:
            allowed = [name for name in strategies.names()
                       if not getattr(strategies.get(name), "runs_code", False)]
        return ClientRules(
            allowed={"strategy": allowed, "verifier": self.allowed_verifiers},
            limits={k: v.bound() for k, v in self.client_limits.items()})


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config {path} is not valid {path.suffix or 'TOML'}: {exc}") from None
    section = data.get("serve", data)
    if not isinstance(section, dict):
        raise ConfigError(f"config {path}: [serve] must be a table")
    if section is not data and "tools" in data and "tools" not in section:
        section = {**section, "tools": data["tools"]}
    return dict(section)


def _from_env(env: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, field in ServeConfig.model_fields.items():
        raw = env.get(ENV_PREFIX + name.upper())
        if raw is None:
            continue
        if field.annotation in (str, str | None, int, float):
            out[name] = raw
        else:
            try:
                out[name] = json.loads(raw)
            except ValueError:
                raise ConfigError(f"{ENV_PREFIX}{name.upper()} must be JSON") from None
    keys = [k.strip() for k in env.get(KEYS_ENV, "").split(",") if k.strip()]
    if keys:
        out.setdefault("api_keys", {})
        for key in keys:
            out["api_keys"].setdefault(key, {})
    return out


def load_config(path: Path | None = None, env: dict[str, str] | None = None,
                **overrides: Any) -> ServeConfig:
    """Merge defaults, the file at ``path``, environment variables and explicit overrides."""
    env = dict(os.environ) if env is None else env
    data: dict[str, Any] = _read_file(path) if path else {}
    from_env = _from_env(env)
    file_keys = data.get("api_keys") or {}
    data.update(from_env)
    if "api_keys" in from_env and isinstance(file_keys, dict):
        data["api_keys"] = {**from_env["api_keys"], **file_keys}
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return ServeConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid gateway config: {problems}") from None
