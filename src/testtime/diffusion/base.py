"""What the diffusion layer is made of: problems, denoisers, verifiers, results, errors.

A *denoiser* is one network evaluation (an NFE per sample); a *sampler* (sampler.py) moves a
batch of states along a Gaussian path with it; a *search* (searches/) decides which states to
denoise, re-noise, resample or keep; a *verifier* scores decoded samples in [0, 1]. Every
denoiser and verifier pass goes through the Ledger (context.py) in NFEs, FLOPs and seconds.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from pydantic import Field

from testtime.registry import Registry
from testtime.types import Frozen, Usage


class DiffusionError(ValueError):
    """Input a diffusion run cannot use: raised before any denoising starts."""


class DiffusionProblem(Frozen):
    """One thing to generate: a class label, a prompt, or neither, and its noise seed."""

    id: str
    label: int | None = None
    prompt: str | None = None
    seed: int = 0


@runtime_checkable
class Denoiser(Protocol):
    """A network that predicts noise, the clean sample or a velocity on a Gaussian path.

    ``prediction`` is ``epsilon``, ``sample``, ``v_prediction`` or ``flow`` (v = ε − x₀).
    ``passes(guidance)`` is the forward passes per sample of one call (2 with classifier-free
    guidance); ``flops_per_pass`` is None where the network's shape is unknown.
    """

    name: str
    sample_shape: tuple[int, ...]
    prediction: str
    conditioning: str | None
    flops_per_pass: float | None

    def condition(self, problem: DiffusionProblem, guidance: float) -> Any:
        """Prepare ``problem``'s conditioning once (a label tensor, prompt embeddings)."""
        ...

    def passes(self, guidance: float) -> int:
        """Forward passes per sample per call at this guidance scale."""
        ...

    def __call__(self, x: torch.Tensor, t: float, cond: Any, guidance: float) -> torch.Tensor:
        """The network's (guided) prediction for states ``x`` at model time ``t``."""
        ...

    def decode(self, x0: torch.Tensor) -> torch.Tensor:
        """Clean states (or latents) to images in [0, 1], shape (B, C, H, W)."""
        ...


@runtime_checkable
class ImageVerifier(Protocol):
    """Scores decoded samples in [0, 1]; ``needs`` names problem fields it reads."""

    name: str
    needs: frozenset[str]
    flops_per_pass: float | None

    def score(self, images: torch.Tensor, problem: DiffusionProblem) -> torch.Tensor:
        """One score in [0, 1] per image of ``images`` (B, C, H, W) in [0, 1]."""
        ...


class DiffusionResult(Frozen):
    """What a search returns: the chosen sample, its verifier score, and the cost."""

    problem_id: str
    strategy: str
    score: float
    image: list[Any] = Field(default_factory=list, description="the chosen image, (C, H, W) "
                             "nested lists in [0, 1]")
    usage: Usage = Usage()
    samples_scored: int = 0
    budget_exhausted: bool = False
    budget_limit: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict)

    def tensor(self) -> torch.Tensor:
        """The chosen image as a (C, H, W) tensor."""
        return torch.tensor(self.image, dtype=torch.float32)


searches: Registry[Any] = Registry("diffusion search")
verifiers: Registry[Any] = Registry("image verifier")
engines: Registry[Any] = Registry("diffusion model")
