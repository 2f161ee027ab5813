"""Bad input is a clear DiffusionError (or SpecError) before any denoising."""

from __future__ import annotations

import pytest

from testtime.budget import Budget
from testtime.diffusion.base import DiffusionError, DiffusionProblem
from testtime.diffusion.context import DiffusionContext
from testtime.diffusion.engines import make_engine, make_verifier
from testtime.diffusion.searches import make_search
from testtime.registry import SpecError


def test_unknown_model():
    with pytest.raises(SpecError, match="unknown diffusion model 'nosuch'; known: diffusers"):
        make_engine("nosuch")


def test_unknown_search():
    with pytest.raises(SpecError, match="unknown diffusion search"):
        make_search("beam-me-up")


@pytest.mark.parametrize("name", ["pndm", "DPMSolverMultistepScheduler", "unipc"])
def test_scheduler_that_cannot_be_searched(tiny, name):
    with pytest.raises(DiffusionError, match="cannot be searched"):
        tiny.sampler(name)


def test_flow_scheduler_on_ddpm_model(tiny):
    with pytest.raises(DiffusionError, match="does not fit a DDPM-style model"):
        tiny.sampler("euler")


def test_verifier_needing_a_prompt_the_task_lacks(tiny):
    with pytest.raises(DiffusionError, match="needs a prompt"):
        make_verifier("clip:path=/nonexistent/clip", tiny, tiny.problems(1, 0))


def test_builtin_verifier_needs_a_label(tiny, counter):
    hook = counter(tiny.pack.denoiser)
    try:
        with pytest.raises(DiffusionError, match="needs a label"):
            DiffusionContext(DiffusionProblem(id="x"), tiny.sampler(), tiny.verifier("judge"))
    finally:
        hook.close()
    assert hook.samples == 0


def test_budget_below_one_denoising(tiny, counter):
    hook = counter(tiny.pack.denoiser)
    ctx = DiffusionContext(tiny.problems(1, 0)[0], tiny.sampler("ddim", guidance=3.0),
                           tiny.verifier("classifier"), budget=Budget(nfes=19))
    try:
        with pytest.raises(DiffusionError, match=r"below one full denoising \(10 steps × 2"):
            make_search("random-search:steps=10").run(ctx)
    finally:
        hook.close()
    assert hook.samples == 0 and ctx.ledger.usage.nfes == 0


def test_digits_verifier_on_another_model(tiny):
    class Other:
        name = "other"

        def verifier(self, name):
            return None

    with pytest.raises(DiffusionError, match="belongs to the built-in digits model"):
        make_verifier("judge", Other())


def test_budget_parses_nfes():
    assert Budget.parse("nfes=80,calls=5").nfes == 80
    with pytest.raises(ValueError):
        Budget.parse("nfes=0")
