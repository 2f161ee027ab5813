"""Building a verifier from its spec, wrapped in a per-run score cache."""

from __future__ import annotations

from typing import cast

from testtime.registry import build
from testtime.verifiers.base import Verifier, verifiers
from testtime.verifiers.cache import CachedVerifier


def make_verifier(spec: str, *, cache: bool = True) -> Verifier:
    """Build a verifier from a spec such as ``confidence`` or ``[judge:k=3]``.

    The verifier is wrapped in a score cache (one per built verifier, i.e. per run), so the
    same candidate of the same problem is never scored twice.
    """
    spec = spec.strip()
    if len(spec) >= 2 and spec[0] + spec[-1] == "[]":
        spec = spec[1:-1].strip()
    verifier: Verifier = build(verifiers, spec)
    return cast(Verifier, CachedVerifier(verifier, spec)) if cache else verifier
