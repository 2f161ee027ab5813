"""Test-time scaling for diffusion and flow models: samplers, searches, verifiers, in NFEs.

``make_engine("digits")`` trains (once, cached) the built-in 8×8 digits model;
``make_engine("diffusers:path=…")`` wraps a diffusers pipeline. A search from
``make_search("random-search:n=8")`` runs in a :class:`DiffusionContext` whose Ledger counts
every denoiser and verifier pass against the same :class:`~testtime.budget.Budget`.

Names are imported on first use, so ``testtime`` (and its CLI) starts without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "Denoiser": "base", "DiffusionError": "base", "DiffusionProblem": "base",
    "DiffusionResult": "base", "ImageVerifier": "base", "DiffusionContext": "context",
    "Engine": "engines", "make_engine": "engines", "make_verifier": "engines",
    "Sampler": "sampler", "Search": "searches", "make_search": "searches",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'testtime.diffusion' has no attribute {name!r}")
    return getattr(importlib.import_module(f"testtime.diffusion.{_WHERE[name]}"), name)
