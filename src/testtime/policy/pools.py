"""Pooled strategies: whose k-sample runs are scored from one pool of draws, and their specs.

A strategy declares its pool (``pool = Pool("majority")``); the policy, its fit and the bench
read those declarations from the strategy registry when used, so this module imports no
strategy and a new pooled strategy needs no edit here.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from testtime.registry import Registry, build, split_spec

DRAW_FIELDS = ("temperature", "max_tokens", "top_p", "top_k", "min_p", "repeat_penalty",
               "style", "answer_cue", "max_calls")
"""What decides how a pooled strategy draws one sample (not n, not the vote)."""
SAMPLER_FIELDS = ("temperature", "max_tokens", "top_p", "top_k", "min_p", "repeat_penalty")
SHARED_DRAW = "self-consistency"
"""The strategy whose plain samples every vote family (majority, weighted, best-of) pools."""


@dataclass(frozen=True)
class Pool:
    """A pooled strategy's declaration: its ``family`` (``majority``, ``weighted``,
    ``best-of``, ``no-thinking``, ``tool-integrated``) and the strategy that draws one of its
    samples. A family drawn by a strategy of its own is voted only as itself (``family@k``);
    the plain samples of :data:`SHARED_DRAW` are scored by every vote family."""

    family: str
    drawn_by: str = SHARED_DRAW

    @property
    def own_draw(self) -> bool:
        """Whether its samples are its own kind (not the plain samples every vote shares)."""
        return self.drawn_by != SHARED_DRAW


@lru_cache(maxsize=256)
def built(spec: str) -> Any:
    """The strategy a spec builds (built once per spec), from the strategy registry."""
    return build(Registry.of("strategy"), spec)


def pools() -> dict[str, Pool]:
    """Every registered strategy that declares a pool, by name."""
    registry = Registry.of("strategy")
    declared = ((name, getattr(registry.get(name), "pool", None)) for name in registry.names())
    return {name: pool for name, pool in declared if pool is not None}


def pooled_families() -> dict[str, str]:
    """Pooled strategies' families, by strategy name."""
    return {name: pool.family for name, pool in pools().items()}


def spec_of_family(family: str) -> str:
    """The strategy name of a pooled ``family``."""
    for name, pool in pools().items():
        if pool.family == family:
            return name
    raise KeyError(family)


def draw_spec(spec: str) -> str | None:
    """How one sample of a pooled strategy is drawn, as a spec: its pool's ``drawn_by`` with
    every setting of :data:`DRAW_FIELDS`. Specs with the same draw spec sample alike, so one
    pool scores them all; None if ``spec`` does not pool (as configured: a strategy whose
    samples another strategy draws, ``samples=SPEC``, does not)."""
    name, _ = split_spec(spec)
    pool = pools().get(name)
    if pool is None:
        return None
    strategy = built(spec)
    if strategy.pooled() is None:
        return None
    items = [f"{key}={quoted(str(getattr(strategy, key)))}" for key in DRAW_FIELDS
             if getattr(strategy, key, None) is not None]
    return f"{pool.drawn_by}:{','.join(items)}"


def probe_draw(probe: str) -> str:
    """The draw spec of a probe; ValueError if ``probe`` is not a pooled sampling strategy."""
    draw = draw_spec(probe)
    if draw is None:
        raise ValueError(f"probe {probe!r} is not a pooled sampling strategy "
                         f"({', '.join(sorted(pools()))})")
    return draw


def sampler_options(source: str, *, verifier: bool) -> list[str]:
    """``key=value`` items of ``source``'s sampler settings (and its verifier, if asked)."""
    _, opts = split_spec(source)
    keep = {*SAMPLER_FIELDS, *(("verifier",) if verifier else ())}
    return [f"{key}={quoted(v)}" for key, v in opts.items() if key in keep]


def sampling_spec(source: str, family: str, k: int) -> str:
    """The spec of ``family`` at k samples drawing like ``source`` (with its verifier, for the
    families that score)."""
    name = spec_of_family(family)
    if pools()[name].own_draw:
        _, opts = split_spec(source)
        items = [f"{key}={quoted(v)}" for key, v in opts.items() if key not in ("n", "verifier")]
        return ",".join([f"{name}:n={k}", *items])
    items = [f"n={k}", *sampler_options(source, verifier=family != "majority")]
    return f"{name}:{','.join(items)}"


def quoted(value: str) -> str:
    """``value`` bracketed where it holds a spec's separators."""
    return f"[{value}]" if any(ch in value for ch in ",:=") else value
