"""Each search beats best-of-1 on the verifier at fixed seeds; the Ledger's NFEs are the model's."""

from __future__ import annotations

import numpy as np
import pytest

from testtime.budget import Budget
from testtime.diffusion.context import DiffusionContext
from testtime.diffusion.searches import make_search

SEARCHES = ["random-search", "zero-order", "paths", "smc", "evolution"]


def _run(engine, spec: str, nfes: int, problems, scheduler: str = "ddpm"):
    sampler = engine.sampler(scheduler)
    verifier = engine.verifier("classifier")
    out = []
    for p in problems:
        ctx = DiffusionContext(p, sampler, verifier, budget=Budget(nfes=nfes))
        out.append(make_search(spec).run(ctx))
    return out


@pytest.mark.parametrize("search", SEARCHES)
def test_search_beats_best_of_one(tiny, search):
    problems = tiny.problems(20, seed=500)
    one = _run(tiny, "steps:steps=10", 10, problems)
    found = _run(tiny, f"{search}:steps=10", 80, problems)
    base, searched = np.mean([r.score for r in one]), np.mean([r.score for r in found])
    assert searched > base + 0.05, (search, base, searched)
    assert all(r.usage.nfes <= 80 for r in found)
    assert all(r.samples_scored >= 2 for r in found)


@pytest.mark.parametrize("search", [*SEARCHES, "steps:steps=7"])
def test_ledger_nfes_equal_denoiser_passes(tiny, counter, search):
    hook = counter(tiny.pack.denoiser)
    try:
        for r in _run(tiny, search if ":" in search else f"{search}:steps=5", 37,
                      tiny.problems(3, seed=7)):
            assert r.usage.nfes <= 37
        assert hook.samples > 0
    finally:
        hook.close()
    total = 0
    hook = counter(tiny.pack.denoiser)
    try:
        for r in _run(tiny, search if ":" in search else f"{search}:steps=5", 37,
                      tiny.problems(3, seed=7)):
            total += r.usage.nfes
            assert r.usage.calls > 0 and r.usage.flops > 0 and r.usage.flops_known
    finally:
        hook.close()
    assert total == hook.samples


def test_guidance_counts_two_passes_per_sample(tiny, counter):
    sampler = tiny.sampler("ddim", guidance=2.0)
    p = tiny.problems(1, seed=3)[0]
    hook = counter(tiny.pack.denoiser)
    try:
        ctx = DiffusionContext(p, sampler, tiny.verifier("classifier"), budget=Budget(nfes=40))
        r = make_search("random-search:steps=5").run(ctx)
    finally:
        hook.close()
    assert r.extra["n"] == 4 and r.usage.nfes == 40 == hook.samples


def test_same_seed_same_result(tiny):
    a = _run(tiny, "smc:steps=5", 20, tiny.problems(2, seed=11))
    b = _run(tiny, "smc:steps=5", 20, tiny.problems(2, seed=11))
    assert [r.score for r in a] == [r.score for r in b]
    assert a[0].image == b[0].image


def test_verifier_passes_are_recorded(tiny):
    r = _run(tiny, "random-search:n=6,steps=4", 100, tiny.problems(1, seed=1))[0]
    assert r.usage.nfes == 24 and r.usage.verifier_passes == 6 and r.usage.verifier_calls == 1
