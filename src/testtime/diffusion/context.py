"""The Context a search runs in: every denoiser and verifier pass goes through its Ledger.

A search file holds only its idea; here live the batching, the NFE and FLOP accounting, the
budget checks, the decoding and the best-so-far, once for every search.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from testtime.budget import Budget, BudgetExhausted, Ledger
from testtime.diffusion.base import DiffusionError, DiffusionProblem, DiffusionResult, ImageVerifier
from testtime.diffusion.paths import Level
from testtime.diffusion.sampler import Sampler
from testtime.types import Usage

MAX_BATCH = 64


@dataclass
class Best:
    """The best sample seen so far and its score."""

    score: float = float("-inf")
    image: torch.Tensor | None = None


@dataclass
class DiffusionContext:
    """One problem's sampler, verifier, Ledger, seeded generator and best-so-far."""

    problem: DiffusionProblem
    sampler: Sampler
    verifier: ImageVerifier
    budget: Budget = field(default_factory=Budget)
    ledger: Ledger = field(init=False)
    generator: torch.Generator = field(init=False)
    best: Best = field(default_factory=Best)
    scored: int = 0
    cond: Any = field(init=False)

    def __post_init__(self) -> None:
        self.ledger = Ledger(budget=self.budget)
        self.generator = torch.Generator().manual_seed(self.problem.seed)
        check_verifier(self.verifier, self.problem)
        self.cond = self.sampler.denoiser.condition(self.problem, self.sampler.guidance)

    def nfes_left(self) -> int | None:
        """Denoiser passes left in the budget (None: no NFE limit)."""
        if self.budget.nfes is None:
            return None
        return self.budget.nfes - self.ledger.usage.nfes

    def affordable(self, steps: int) -> int | None:
        """How many more full ``steps``-step denoisings the NFE budget allows (None: any)."""
        left = self.nfes_left()
        return None if left is None else left // (steps * self.sampler.passes())

    def require(self, steps: int) -> None:
        """Refuse, before any work, a budget below one full ``steps``-step denoising."""
        need = steps * self.sampler.passes()
        if self.budget.nfes is not None and self.budget.nfes < need:
            raise DiffusionError(f"budget nfes={self.budget.nfes} is below one full denoising "
                                 f"({steps} steps × {self.sampler.passes()} passes = {need} NFEs)")

    def noise(self, n: int) -> torch.Tensor:
        """``n`` initial noises from the problem's seeded generator."""
        return self.sampler.noise(n, self.generator)

    def step(self, x: torch.Tensor, here: Level, there: Level, eta: float | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step of every state in ``x`` from ``here`` to ``there``: (states, x₀ estimates).

        The whole batch is admitted by the Ledger first (BudgetExhausted if it does not fit)
        and recorded after, in NFEs, one call per network batch, FLOPs and seconds.
        """
        passes = self.sampler.passes()
        x0s, epss = [], []
        for chunk in x.split(MAX_BATCH):
            n = len(chunk) * passes
            per = self.sampler.denoiser.flops_per_pass
            flops = None if per is None else per * n
            self.ledger.plan_nfes(n, flops)
            start = time.perf_counter()
            x0, eps = self.sampler.predict(chunk, here, self.cond)
            self.ledger.record_nfes(n, time.perf_counter() - start, flops)
            x0s.append(x0)
            epss.append(eps)
        x0, eps = torch.cat(x0s), torch.cat(epss)
        return self.sampler.move(x0, eps, here, there, self.generator, eta), x0

    def denoise(self, x: torch.Tensor, grid: list[Level], start: int = 0, stop: int | None = None,
                eta: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Take states at ``grid[start]`` to ``grid[stop]`` (default: clean); (states, x₀)."""
        stop = len(grid) - 1 if stop is None else stop
        x0 = x
        for i in range(start, stop):
            x, x0 = self.step(x, grid[i], grid[i + 1], eta)
        return x, x0

    def renoise(self, x: torch.Tensor, here: Level, there: Level) -> torch.Tensor:
        """States at ``here`` taken back to the noisier ``there`` (free: no NFE)."""
        return self.sampler.renoise(x, here, there, self.generator)

    def score(self, x0: torch.Tensor, *, final: bool = True) -> torch.Tensor:
        """Verifier scores of clean states (or x₀ estimates) ``x0``, through the Ledger.

        ``final`` samples also compete for the best-so-far that the result returns.
        """
        images = self.sampler.denoiser.decode(x0)
        per = self.verifier.flops_per_pass
        flops = None if per is None else per * len(images)
        plan = self.ledger.plan(1, 0, verifier=True, flops=flops or 0.0)
        start = time.perf_counter()
        try:
            with torch.no_grad():
                scores = self.verifier.score(images, self.problem).float().clamp(0.0, 1.0)
        finally:
            self.ledger.settle(plan, None)
        seconds = time.perf_counter() - start
        self.ledger.add(Usage(verifier_calls=1, verifier_passes=len(images),
                              verifier_seconds=seconds, verifier_flops=flops or 0.0,
                              flops=flops or 0.0, flops_known=flops is not None,
                              counted_by=(f"verifier:{self.verifier.name}",)))
        if final:
            self.scored += len(images)
            i = int(scores.argmax())
            if float(scores[i]) > self.best.score:
                self.best = Best(float(scores[i]), images[i].detach().cpu())
        return scores

    def result(self, strategy: str, **extra: Any) -> DiffusionResult:
        """The best sample so far with the Ledger's usage."""
        if self.best.image is None:
            raise BudgetExhausted(self.ledger.limit or "nfes", "no sample was finished")
        return DiffusionResult(
            problem_id=self.problem.id, strategy=strategy, score=self.best.score,
            image=self.best.image.tolist(), usage=self.ledger.close(),
            samples_scored=self.scored, budget_exhausted=self.ledger.exhausted,
            budget_limit=self.ledger.limit, extra=extra)


def check_verifier(verifier: ImageVerifier, problem: DiffusionProblem) -> None:
    """Refuse a verifier that needs a problem field (a prompt, a label) this problem lacks."""
    for need in sorted(verifier.needs):
        if getattr(problem, need, None) is None:
            raise DiffusionError(f"verifier {verifier.name!r} needs a {need}, and problem "
                                 f"{problem.id!r} has none; give the task a {need} or pick "
                                 "another verifier")
