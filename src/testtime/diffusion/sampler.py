"""The sampler: a denoiser on a Gaussian path, moving batches of states by k steps.

A sampler is stateless between calls (each step is a function of the states and the two
levels alone), so searches may branch, restart and resample trajectories freely; that is
also why multistep schedulers, which keep a history of past outputs, are refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from testtime.diffusion.base import Denoiser, DiffusionError
from testtime.diffusion.paths import FlowPath, Level, Path, move, renoise, split

SEARCHABLE = {
    "ddim": "DDIM's update (η = 0 unless a search asks for noise)",
    "ddpm": "DDPM's ancestral update (η = 1)",
    "euler": "flow matching's Euler update (η = 0), or its SDE twin with η > 0",
}
UNSEARCHABLE = {
    "pndm": "a multistep scheduler: each step reads the model's past outputs",
    "dpm-multistep": "a multistep scheduler: each step reads the model's past outputs",
    "dpmsolver-multistep": "a multistep scheduler: each step reads the model's past outputs",
    "unipc": "a multistep predictor–corrector: each step reads the model's past outputs",
    "deis": "a multistep scheduler: each step reads the model's past outputs",
    "lms": "a linear multistep scheduler: each step reads the model's past outputs",
    "heun": "a second-order scheduler whose steps come in dependent pairs",
}


def check_scheduler(name: str, path: Path | None) -> float:
    """The η of scheduler ``name`` on ``path``; a DiffusionError for one search cannot use.

    With no path, only the name is checked.
    """
    key = name.lower().removesuffix("scheduler").replace("_", "").replace("-", "")
    refused = {k.replace("-", ""): why for k, why in UNSEARCHABLE.items()}
    if key in refused:
        raise DiffusionError(
            f"scheduler {name!r} cannot be searched: {refused[key]}, so a search cannot "
            f"branch, restart or resample its trajectories; use one of {', '.join(SEARCHABLE)}")
    if key not in SEARCHABLE:
        raise DiffusionError(f"unknown scheduler {name!r}; searchable: {', '.join(SEARCHABLE)}")
    if path is None:
        return 1.0 if key == "ddpm" else 0.0
    flow = isinstance(path, FlowPath)
    if flow != (key == "euler"):
        kind = "a flow-matching" if flow else "a DDPM-style"
        raise DiffusionError(f"scheduler {name!r} does not fit {kind} model; use "
                             f"{'euler' if flow else 'ddim or ddpm'}")
    return 1.0 if key == "ddpm" else 0.0


@dataclass
class Sampler:
    """A denoiser on a path with a scheduler's η and a guidance scale; batched, stateless."""

    denoiser: Denoiser
    path: Path
    scheduler: str = "ddim"
    guidance: float = 1.0
    clip: float | None = None

    def __post_init__(self) -> None:
        self.eta = check_scheduler(self.scheduler, self.path)

    def grid(self, steps: int) -> list[Level]:
        """The ``steps + 1`` levels of a ``steps``-step denoising, noisiest first."""
        if steps < 1:
            raise DiffusionError(f"steps must be at least 1, not {steps}")
        return self.path.grid(steps)

    def noise(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` initial noises."""
        return torch.randn((n, *self.denoiser.sample_shape), generator=generator)

    def passes(self) -> int:
        """Forward passes per sample per step."""
        return self.denoiser.passes(self.guidance)

    def predict(self, x: torch.Tensor, here: Level, cond: Any
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """x₀ and ε estimates at ``here`` (one denoiser call: the NFEs of the batch)."""
        with torch.no_grad():
            out = self.denoiser(x, here.t, cond, self.guidance)
        x0, eps = split(out.to(x.dtype), x, here, self.denoiser.prediction)
        if self.clip is not None:
            x0 = x0.clamp(-self.clip, self.clip)
            if here.s > 0:
                eps = (x - here.a * x0) / here.s
        return x0, eps

    def move(self, x0: torch.Tensor, eps: torch.Tensor, here: Level, there: Level,
             generator: torch.Generator, eta: float | None = None) -> torch.Tensor:
        """The states at ``there`` from the estimates at ``here`` (no NFE)."""
        return move(x0, eps, here, there, self.eta if eta is None else eta, generator)

    def renoise(self, x: torch.Tensor, here: Level, there: Level,
                generator: torch.Generator) -> torch.Tensor:
        """States at ``here`` taken back to the noisier ``there`` (no NFE)."""
        return renoise(x, here, there, generator)
