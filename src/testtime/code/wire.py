"""Plain data across the sandbox's channel: exact built-in types only, nothing with behaviour.

Values are JSON with tagged containers: a JSON array is a ``list``; an object has exactly one
key, ``t`` (tuple), ``d`` (dict, as key/value pairs), ``s`` (set), ``f`` (frozenset), ``b``
(bytes, hex) or ``c`` (complex). Scalars are ``None``, ``bool``, ``int``, ``float`` and
``str``, checked by exact type, so ``True`` stays a bool, ``1`` an int, and a subclass (an
``int`` with its own ``__eq__``, a ``str`` that lies about its length) is refused on both
ends. Decoding rebuilds fresh built-in objects from the JSON text alone. Standard library
only: this file's text is also the head of the scripts run in the sandbox.
"""

import json
import sys
from typing import Any

MAX_DEPTH = 64
MAX_INT_DIGITS = 100_000


class Unplain(ValueError):
    """A value that is not plain data (an object with behaviour, or too deep)."""


def _check_int_digits() -> None:
    if hasattr(sys, "set_int_max_str_digits") and sys.get_int_max_str_digits() != MAX_INT_DIGITS:
        sys.set_int_max_str_digits(MAX_INT_DIGITS)


def to_plain(value: Any, depth: int = 0) -> Any:
    """``value`` as tagged JSON-able data; :class:`Unplain` if it holds anything else."""
    if depth > MAX_DEPTH:
        raise Unplain("nested too deeply")
    kind = type(value)
    if value is None or kind is bool or kind is int or kind is float or kind is str:
        return value
    if kind is list:
        return [to_plain(v, depth + 1) for v in value]
    if kind is tuple:
        return {"t": [to_plain(v, depth + 1) for v in value]}
    if kind is dict:
        return {"d": [[to_plain(k, depth + 1), to_plain(v, depth + 1)]
                      for k, v in value.items()]}
    if kind is set or kind is frozenset:
        items = [to_plain(v, depth + 1) for v in value]
        return {"s" if kind is set else "f": items}
    if kind is bytes:
        return {"b": value.hex()}
    if kind is complex:
        return {"c": [value.real, value.imag]}
    raise Unplain(f"{kind.__module__}.{kind.__qualname__} is not plain data")


def from_plain(data: Any, depth: int = 0) -> Any:
    """The value tagged JSON-able ``data`` (as ``json.loads`` gives it) stands for."""
    if depth > MAX_DEPTH:
        raise Unplain("nested too deeply")
    kind = type(data)
    if data is None or kind is bool or kind is int or kind is float or kind is str:
        return data
    if kind is list:
        return [from_plain(v, depth + 1) for v in data]
    if kind is not dict or len(data) != 1:
        raise Unplain(f"not plain data: {kind.__name__}")
    (tag, body), = data.items()
    try:
        if tag == "b" and type(body) is str:
            return bytes.fromhex(body)
        if type(body) is not list:
            raise Unplain(f"bad body for tag {tag!r}")
        items = [from_plain(v, depth + 1) for v in body]
        if tag == "t":
            return tuple(items)
        if tag == "s":
            return set(items)
        if tag == "f":
            return frozenset(items)
        if tag == "c" and len(items) == 2 and all(type(x) is float for x in items):
            return complex(items[0], items[1])
        if tag == "d" and all(type(p) is list and len(p) == 2 for p in items):
            return {p[0]: p[1] for p in items}
    except TypeError as exc:  # an unhashable key or set member
        raise Unplain(str(exc)) from None
    raise Unplain(f"unknown tag {tag!r}")


def dumps(value: Any) -> str:
    """One line of JSON for ``value`` (which must already be tagged plain data)."""
    _check_int_digits()
    return json.dumps(value, separators=(",", ":"))


def loads(line: str | bytes) -> Any:
    """Parse one line of JSON, refusing anything that is not JSON (an :class:`Unplain`)."""
    _check_int_digits()
    try:
        return json.loads(line)
    except (ValueError, RecursionError) as exc:
        raise Unplain(f"not JSON: {exc}"[:200]) from None


def encode(value: Any) -> str:
    """``value`` as one line on the wire."""
    return dumps(to_plain(value))


def decode(line: str | bytes) -> Any:
    """The plain value one line on the wire stands for."""
    return from_plain(loads(line))
