"""The baseline the papers scale against: one sample, spending compute on more steps."""

from __future__ import annotations

from typing import Any

from testtime.diffusion.base import searches
from testtime.diffusion.context import DiffusionContext
from testtime.diffusion.searches.base import Search


@searches.register("steps")
class MoreSteps(Search):
    """Denoise one noise with ``steps`` steps; no verifier choice (Ma et al.'s baseline)."""

    def search(self, ctx: DiffusionContext) -> dict[str, Any] | None:
        """One sample, scored for the record."""
        x, _ = ctx.denoise(ctx.noise(1), ctx.sampler.grid(self.steps))
        ctx.score(x)
        return None
