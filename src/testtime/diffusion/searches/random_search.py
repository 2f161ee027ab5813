"""Random search: best-of-N over initial noises (Ma et al., 2025, §3.1).

    sample N i.i.d. noises z₁…z_N ~ N(0, I)
    denoise each with the sampler: x_i = Φ(z_i)
    return argmax_i V(x_i)
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from testtime.diffusion.base import searches
from testtime.diffusion.context import DiffusionContext
from testtime.diffusion.searches.base import Search, fill


@searches.register("random-search")
class RandomSearch(Search):
    """Best of N noises by the verifier; N unset: as many as the NFE budget affords."""

    n: int | None = Field(default=None, ge=1, le=4096, description="noises to try")

    def search(self, ctx: DiffusionContext) -> dict[str, Any] | None:
        """Denoise N noises in one batch and keep the verifier's best."""
        n = fill(self.n, ctx.affordable(self.steps))
        x, _ = ctx.denoise(ctx.noise(n), ctx.sampler.grid(self.steps))
        ctx.score(x)
        return {"n": n}
