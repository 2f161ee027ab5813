"""Name → class registries and the one parser for ``name:key=value,…`` spec strings.

The parser is also the trust boundary. Specs from the operator (config, CLI, Python) may set
anything; specs that arrive in a request are parsed in *client mode* (a :class:`ClientRules`),
where each option's trust decides: every settings field is client-settable or operator-only,
by a marker on the field or, unmarked, by its type (see :func:`field_trust`).
"""

from __future__ import annotations

import enum
import math
import types
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar, Union, get_args, get_origin

T = TypeVar("T")


class SpecError(ValueError):
    """A spec string that cannot be parsed or names something unknown."""


class SpecForbidden(SpecError):
    """A client spec that sets what only the operator may set (or beyond the operator's bounds).

    ``code`` says which rule refused it; ``option`` names the refused option, if one was.
    """

    def __init__(self, message: str, code: str, option: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.option = option


class Trust(enum.Enum):
    """Who may set a settings field: anyone (``CLIENT``) or only the operator (``OPERATOR``)."""

    CLIENT = "client"
    OPERATOR = "operator"


CLIENT = Trust.CLIENT
OPERATOR = Trust.OPERATOR


@dataclass(frozen=True)
class Nested:
    """Field marker: the value is a spec of registry ``kind`` (e.g. a strategy's verifier).

    A client may give one only if the operator allows that kind's name, and then only its
    client-settable options, checked by the same rules all the way down.
    """

    kind: str


_REGISTRIES: dict[str, Registry[Any]] = {}


class Registry(Generic[T]):
    """Maps names to factories; replaces if/elif dispatch."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, type[T]] = {}
        _REGISTRIES[kind] = self

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        """Class decorator adding ``cls`` under ``name``."""

        def deco(cls: type[T]) -> type[T]:
            if name in self._items and self._items[name] is not cls:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._items[name] = cls
            cls.registered_name = name  # type: ignore[attr-defined]
            return cls

        return deco

    def get(self, name: str) -> type[T]:
        """The class registered under ``name``; a SpecError lists the known names otherwise."""
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            raise SpecError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._items)

    def remove(self, name: str) -> None:
        """Forget ``name`` (a strategy a test registered for itself)."""
        self._items.pop(name, None)

    @staticmethod
    def of(kind: str) -> Registry[Any]:
        """The registry of ``kind`` (``strategy``, ``verifier``), looked up when used, so a
        lower layer can build what a higher one registers without importing it."""
        try:
            return _REGISTRIES[kind]
        except KeyError:
            raise SpecError(f"no registry of {kind!r}") from None


def split_spec(spec: str, positional: str | None = None) -> tuple[str, dict[str, str]]:
    """Split ``name:key=value,key=value`` into the name and raw string options.

    With ``positional``, a first item without ``=`` is taken as that option
    (``embedded:qwen2.5-coder-0.5b`` is ``embedded:model=qwen2.5-coder-0.5b``).

    Values may be wrapped in brackets or quotes to protect commas, e.g.
    ``best-of-n:n=8,verifier=[judge:model=x,k=3]``.
    """
    spec = spec.strip()
    if not spec:
        raise SpecError("empty spec")
    name, _, rest = spec.partition(":")
    name = name.strip()
    if not name:
        raise SpecError(f"spec {spec!r} has no name before ':'")
    options: dict[str, str] = {}
    for i, item in enumerate(_split_top(rest)):
        if i == 0 and positional and "=" not in item:
            item = f"{positional}={item}"
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise SpecError(f"bad option {item!r} in spec {spec!r}: expected key=value")
        if key in options:
            raise SpecError(f"option {key!r} given twice in spec {spec!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] + value[-1] in ("[]", "''", '""'):
            value = value[1:-1]
        options[key] = value
    return name, options


def _split_top(text: str) -> list[str]:
    """Split on commas that are not inside brackets or quotes."""
    parts: list[str] = []
    buf: list[str] = []
    depth, quote = 0, ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(buf))
            buf = []
            continue
        buf.append(ch)
    if depth or quote:
        raise SpecError(f"unbalanced brackets or quotes in {text!r}")
    if "".join(buf).strip():
        parts.append("".join(buf))
    return [p for p in (p.strip() for p in parts) if p]


def build(registry: Registry[T], spec: str, *, client: ClientRules | None = None,
          **extra: Any) -> T:
    """Parse ``spec`` and instantiate the registered class, validating its options.

    Classes are pydantic models, so option types, ranges and unknown keys are checked there
    and reported as a SpecError naming the spec. With ``client``, the spec came from a request:
    it is checked against those rules first (SpecForbidden) and nothing it names is opened.
    """
    from pydantic import ValidationError

    name, options = split_spec(spec)
    cls = registry.get(name)
    if client is not None:
        client.check(registry, name, options)
    try:
        built = cls.model_validate({**options, **extra})  # type: ignore[attr-defined]
    except ValidationError as exc:
        raise SpecError(
            f"invalid {registry.kind} spec {spec!r}: {describe(exc, cls)}") from None
    if client is not None:
        for key in options:
            client.check_bound(registry.kind, name, key, getattr(built, key, None))
    return built


def settings_class(registry: Registry[Any], name: str) -> Any:
    """The pydantic model holding the options of ``name`` (a backend's ``Settings``)."""
    cls = registry.get(name)
    return getattr(cls, "Settings", cls)


_SCALARS = (bool, int, float)


def _is_scalar(annotation: Any) -> bool:
    """A bool/int/float, a Literal or Enum of plain values, or an Optional of one of those."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return bool(args) and all(_is_scalar(a) for a in args)
    if origin is Literal:
        return all(isinstance(a, (*_SCALARS, str)) for a in get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return all(isinstance(m.value, (*_SCALARS, str)) for m in annotation)
    return annotation in _SCALARS


def field_trust(info: Any) -> Trust | Nested:
    """Who may set a pydantic field: its marker, else CLIENT only for plain scalar types.

    Unmarked strings, paths, URLs, lists, dicts and models are operator-only, so a new option
    that could name a file, host or model is safe until someone decides otherwise.
    """
    for meta in getattr(info, "metadata", ()):
        if isinstance(meta, (Trust, Nested)):
            return meta
    return CLIENT if _is_scalar(info.annotation) else OPERATOR


@dataclass(frozen=True)
class Bound:
    """Inclusive bounds the operator puts on a client-settable option."""

    low: float | None = None
    high: float | None = None

    def admits(self, value: float) -> bool:
        """Whether ``value`` lies within the bounds."""
        return ((self.low is None or value >= self.low)
                and (self.high is None or value <= self.high))

    def __str__(self) -> str:
        if self.low is None:
            return f"at most {self.high:g}"
        if self.high is None:
            return f"at least {self.low:g}"
        return f"between {self.low:g} and {self.high:g}"


@dataclass(frozen=True)
class ClientRules:
    """What a request may choose: enabled names per registry kind, bounds per option.

    ``allowed`` maps a kind (``strategy``, ``verifier``) to the names a client may use (None:
    all); a kind it does not list (``backend``) cannot be named by a client at all.
    ``limits`` maps ``option`` or ``name.option`` (``n``, ``beam.width``) to a Bound.
    """

    allowed: Mapping[str, Collection[str] | None] = field(default_factory=dict)
    limits: Mapping[str, Bound] = field(default_factory=dict)

    def check(self, registry: Registry[Any], name: str, options: Mapping[str, str]) -> None:
        """Refuse a name the operator did not enable or an option only the operator may set."""
        kind = registry.kind
        if kind not in self.allowed:
            raise SpecForbidden(f"a request may not name a {kind}; the server's operator "
                                "chooses it", "operator_only_option", kind)
        enabled = self.allowed[kind]
        if enabled is not None and name not in enabled:
            raise SpecForbidden(f"{kind} {name!r} is not enabled for requests on this server; "
                                f"enabled: {', '.join(sorted(enabled)) or 'none'}",
                                f"{kind}_not_allowed", kind)
        fields = settings_class(registry, name).model_fields
        for key, raw in options.items():
            if key not in fields:
                continue
            trust = field_trust(fields[key])
            if trust is OPERATOR:
                raise SpecForbidden(f"option {key!r} of {kind} {name!r} is set by the server's "
                                    "operator only", "operator_only_option", key)
            if isinstance(trust, Nested):
                inner = _unwrap(raw)
                if inner:
                    build(_REGISTRIES[trust.kind], inner, client=self)

    def bound(self, name: str, key: str) -> Bound | None:
        """The operator's bound on option ``key`` of component ``name``, if any."""
        return self.limits.get(f"{name}.{key}", self.limits.get(key))

    def check_bound(self, kind: str, name: str, key: str, value: Any) -> None:
        """Refuse a client-given numeric value outside the operator's bound (or not finite)."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return
        if not math.isfinite(value):
            raise SpecForbidden(f"option {key!r} of {kind} {name!r} must be a finite number",
                                "option_out_of_bounds", key)
        limit = self.bound(name, key)
        if limit is not None and not limit.admits(value):
            raise SpecForbidden(f"option {key!r} of {kind} {name!r} must be {limit} on this "
                                f"server (got {value:g})", "option_out_of_bounds", key)


def describe_options(cls: Any) -> list[str]:
    """Each option of a settings class, on one line: ``name=default`` or ``name (required)``.

    Defaults are shown as Python literals (``sep='\\n\\n'``), so no value breaks a line.
    """
    out = []
    for name, f in cls.model_fields.items():
        if f.is_required():
            out.append(f"{name} (required)")
            continue
        value = f.get_default(call_default_factory=True)
        if isinstance(value, enum.Enum):
            value = value.value
        out.append(f"{name}=" + repr(value).replace("\n", "\\n").replace("\r", "\\r"))
    return out


def describe(exc: Any, cls: Any) -> str:
    """One line per pydantic error, naming the valid options when a key is unknown."""
    lines = []
    for e in exc.errors():
        where = ".".join(str(p) for p in e["loc"]) or "spec"
        if e["type"] == "extra_forbidden":
            known = ", ".join(sorted(getattr(cls, "model_fields", {}))) or "none"
            lines.append(f"unknown option {where!r} (options: {known})")
        else:
            lines.append(f"{where}: {e['msg']}")
    return "; ".join(lines)


def _unwrap(value: str) -> str:
    """A nested spec without the brackets that protect its commas."""
    inner = value.strip()
    while len(inner) >= 2 and inner[0] + inner[-1] == "[]":
        inner = inner[1:-1].strip()
    return inner


def redact(registry: Registry[Any], spec: str) -> str:
    """``spec`` as a client may see it: operator-only values replaced by ``***``.

    Nested specs are redacted the same way; a spec that does not parse shows only its name.
    """
    try:
        name, options = split_spec(spec)
        fields = settings_class(registry, name).model_fields
    except SpecError:
        return spec.partition(":")[0].strip()
    parts = []
    for key, value in options.items():
        trust = field_trust(fields[key]) if key in fields else OPERATOR
        if isinstance(trust, Nested):
            inner = _unwrap(value)
            value = f"[{redact(_REGISTRIES[trust.kind], inner)}]" if inner else value
        elif trust is OPERATOR:
            value = "***"
        elif any(c in value for c in ",[]()'\""):
            value = f"[{value}]"
        parts.append(f"{key}={value}")
    return f"{name}:{','.join(parts)}" if parts else name
