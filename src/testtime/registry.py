"""Name → class registries and the one parser for ``name:key=value,…`` spec strings."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class SpecError(ValueError):
    """A spec string that cannot be parsed or names something unknown."""


class Registry(Generic[T]):
    """Maps names to factories; replaces if/elif dispatch."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, type[T]] = {}

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


def build(registry: Registry[T], spec: str, **extra: Any) -> T:
    """Parse ``spec`` and instantiate the registered class, validating its options.

    Classes are pydantic models, so option types, ranges and unknown keys are checked there
    and reported as a SpecError naming the spec.
    """
    from pydantic import ValidationError

    name, options = split_spec(spec)
    cls = registry.get(name)
    try:
        return cls.model_validate({**options, **extra})  # type: ignore[attr-defined]
    except ValidationError as exc:
        raise SpecError(
            f"invalid {registry.kind} spec {spec!r}: {describe(exc, cls)}") from None


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
