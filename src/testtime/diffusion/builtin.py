"""The built-in engine: the digits pack (digits.py) as a Denoiser and its two classifiers."""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from testtime.diffusion import digits
from testtime.diffusion.base import DiffusionError, DiffusionProblem, engines
from testtime.diffusion.paths import VPPath
from testtime.diffusion.sampler import Sampler


class DigitsDenoiser:
    """The pack's ε-network behind the Denoiser protocol (label-conditional, CFG-capable)."""

    name = "digits"
    sample_shape: tuple[int, ...] = (1, 8, 8)
    prediction = "epsilon"
    conditioning: str | None = "label"

    def __init__(self, net: digits.DigitsDenoiser) -> None:
        self.net = net
        self.flops_per_pass: float | None = 2.0 * digits.param_count(net)

    def condition(self, problem: DiffusionProblem, guidance: float) -> Any:
        """The label (or "no label" for an unconditional problem)."""
        label = digits.NULL_LABEL if problem.label is None else problem.label
        if not 0 <= label <= digits.NULL_LABEL:
            raise DiffusionError(f"digits labels are 0-9, not {label}")
        return label

    def passes(self, guidance: float) -> int:
        """2 with classifier-free guidance (guidance ≠ 1), else 1."""
        return 1 if guidance == 1.0 else 2

    def __call__(self, x: torch.Tensor, t: float, cond: Any, guidance: float) -> torch.Tensor:
        """ε(x, t, label), guided as (1 − w)·ε(x, t) + w·ε(x, t, label) when w ≠ 1."""
        n = len(x)
        times = torch.full((n,), t)
        label = torch.full((n,), int(cond), dtype=torch.long)
        if guidance == 1.0:
            return self.net(x, times, label)
        null = torch.full((n,), digits.NULL_LABEL, dtype=torch.long)
        both = self.net(torch.cat([x, x]), torch.cat([times, times]), torch.cat([label, null]))
        cond_eps, uncond_eps = both[:n], both[n:]
        return uncond_eps + guidance * (cond_eps - uncond_eps)

    def decode(self, x0: torch.Tensor) -> torch.Tensor:
        """States in [-1, 1] to images in [0, 1]."""
        return ((x0 + 1.0) / 2.0).clamp(0.0, 1.0)


class ClassifierVerifier:
    """P(the problem's label) under one of the pack's classifiers, a score in [0, 1]."""

    needs = frozenset({"label"})

    def __init__(self, name: str, net: torch.nn.Module) -> None:
        self.name = name
        self.net = net
        self.flops_per_pass: float | None = 2.0 * digits.param_count(net)

    def score(self, images: torch.Tensor, problem: DiffusionProblem) -> torch.Tensor:
        """Softmax probability of the target digit for each image."""
        assert problem.label is not None
        probs = self.net(images * 2.0 - 1.0).softmax(-1)
        return probs[:, problem.label]


@engines.register("digits")
class DigitsEngine(BaseModel):
    """The built-in 8×8 digits model, trained here on first use and cached."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    recipe: Literal["default", "large"] = Field(
        default="default", description="default: 34k-parameter denoiser, ~10 s to train, "
        "imperfect digits (room for search); large: 184k parameters, ~40 s, near-perfect")

    def load(self, progress: digits.Progress | None = None) -> LoadedDigits:
        """Train or load the pack."""
        return LoadedDigits(digits.load(digits.RECIPES[self.recipe], progress=progress))


class LoadedDigits:
    """The loaded built-in engine: samplers, verifiers and its default task."""

    name = "digits"
    default_steps = 10
    task_kind = "label"

    def __init__(self, pack: digits.DigitsPack) -> None:
        self.pack = pack
        self.denoiser = DigitsDenoiser(pack.denoiser)
        self.path = VPPath.of(pack.alphas_cumprod)

    def sampler(self, scheduler: str = "ddim", guidance: float = 1.0) -> Sampler:
        """A sampler of the pack's denoiser (x₀ clipped to the data's [-1, 1])."""
        return Sampler(self.denoiser, self.path, scheduler=scheduler, guidance=guidance,
                       clip=1.0)

    def verifier(self, name: str) -> ClassifierVerifier | None:
        """The pack's ``classifier`` (the one search sees) or ``judge`` (held out)."""
        if name == "classifier":
            return ClassifierVerifier("classifier", self.pack.verifier)
        if name == "judge":
            return ClassifierVerifier("judge", self.pack.judge)
        return None

    def problems(self, limit: int, seed: int) -> list[DiffusionProblem]:
        """Digits 0-9 in turn, each with its own noise seed."""
        return [DiffusionProblem(id=f"digit{i % 10}-s{seed + i}", label=i % 10, seed=seed + i)
                for i in range(limit)]
