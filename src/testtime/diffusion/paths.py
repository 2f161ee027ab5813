"""Gaussian paths x_t = a_t·x₀ + s_t·ε: DDPM/DDIM's variance-preserving one and flow matching's.

One path covers both families, so every sampler step, re-noising and x₀ estimate below is the
same few lines for a UNet trained on ᾱ_t and a flow model trained on σ. A step from a noisier
level to a cleaner one is DDIM's update with stochasticity η (η = 0: the probability-flow ODE;
η = 1: DDPM's ancestral step). For a flow model η > 0 is the ODE turned into an SDE with the
same marginals, which is what gives search over paths and SMC something to search.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

PREDICTIONS = ("epsilon", "sample", "v_prediction", "flow")


@dataclass(frozen=True)
class Level:
    """A noise level: signal scale ``a``, noise scale ``s``, and the time the model reads."""

    a: float
    s: float
    t: float

    @property
    def clean(self) -> bool:
        """Whether this is the end of the path (no noise left)."""
        return self.s == 0.0


CLEAN = Level(1.0, 0.0, 0.0)


@dataclass(frozen=True)
class VPPath:
    """DDPM's variance-preserving path from a model's ᾱ_t (a = √ᾱ, s = √(1 − ᾱ))."""

    alphas_cumprod: tuple[float, ...]

    @classmethod
    def of(cls, alphas_cumprod: torch.Tensor) -> VPPath:
        """The path of a ᾱ_t tensor (a scheduler's ``alphas_cumprod``)."""
        return cls(tuple(float(v) for v in alphas_cumprod.double()))

    def level(self, t: int) -> Level:
        """The level at training timestep ``t``."""
        ab = self.alphas_cumprod[t]
        return Level(math.sqrt(ab), math.sqrt(1.0 - ab), float(t))

    def grid(self, steps: int) -> list[Level]:
        """``steps`` evenly spaced levels from the noisiest timestep down, then clean."""
        last = len(self.alphas_cumprod) - 1
        ts = [round(last - i * last / steps) for i in range(steps)]
        return [self.level(t) for t in ts] + [CLEAN]


@dataclass(frozen=True)
class FlowPath:
    """Rectified flow's path (a = 1 − σ, s = σ), with the shift SD3-style models use."""

    train_steps: int = 1000
    shift: float = 1.0

    def level(self, sigma: float) -> Level:
        """The level at noise ``sigma`` after the shift."""
        sigma = self.shift * sigma / (1.0 + (self.shift - 1.0) * sigma)
        return Level(1.0 - sigma, sigma, sigma * self.train_steps)

    def grid(self, steps: int) -> list[Level]:
        """``steps`` levels from σ = 1 down (before the shift), then clean."""
        return [self.level(1.0 - i / steps) for i in range(steps)] + [CLEAN]


Path = VPPath | FlowPath


def split(out: torch.Tensor, x: torch.Tensor, here: Level, prediction: str
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's x₀ and ε estimates from its raw ``out`` at level ``here``."""
    a, s = here.a, here.s
    if prediction == "epsilon":
        return (x - s * out) / a, out
    if prediction == "sample":
        return out, (x - a * out) / s
    if prediction == "v_prediction":
        return a * x - s * out, s * x + a * out
    if prediction == "flow":
        return x - s * out, x + (1.0 - s) * out
    raise ValueError(f"unknown prediction type {prediction!r}; known: {', '.join(PREDICTIONS)}")


def move(x0: torch.Tensor, eps: torch.Tensor, here: Level, there: Level, eta: float,
         generator: torch.Generator | None) -> torch.Tensor:
    """DDIM's step from ``here`` to the cleaner ``there`` with stochasticity ``eta``."""
    if there.clean:
        return x0
    r = there.a / here.a if here.a > 0 else 0.0
    var = max(here.s ** 2 - (r * there.s) ** 2, 0.0)
    sigma = eta * there.s * math.sqrt(var) / here.s if eta > 0 else 0.0
    out = there.a * x0 + math.sqrt(max(there.s ** 2 - sigma ** 2, 0.0)) * eps
    if sigma > 0:
        out = out + sigma * torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0)
    return out


def renoise(x: torch.Tensor, here: Level, there: Level,
            generator: torch.Generator | None) -> torch.Tensor:
    """Run the forward (noising) process from ``here`` back to the noisier ``there``."""
    if here.clean and there.clean:
        return x
    r = there.a / here.a
    std = math.sqrt(max(there.s ** 2 - (r * here.s) ** 2, 0.0))
    return r * x + std * torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x)
