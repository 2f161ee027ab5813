"""The built-in diffusion model: scikit-learn's 8×8 digits, a denoiser and two classifiers.

Everything here is trained by testtime itself, deterministically from a seed, and cached under
``$TESTTIME_CACHE/models`` like a model pack. The cache key hashes the recipe and
``VERSION``, so a changed recipe trains anew instead of loading stale weights.

* the denoiser: a class-conditional MLP ε-predictor (label 10 is "no label", dropped at
  ``p_uncond`` during training so classifier-free guidance works), on a DDPM linear-β path;
* the verifier: an MLP classifier on one half of the images, the score search optimises;
* the judge: a small CNN on the other half with another seed, which search never sees.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from testtime.models import cache_dir

VERSION = 1
CLASSES = 10
NULL_LABEL = CLASSES


@dataclass(frozen=True)
class Recipe:
    """How the built-in pack is trained; any change gives a new cache key."""

    hidden: int = 64
    layers: int = 1
    train_steps: int = 1000
    iters: int = 800
    batch: int = 128
    lr: float = 2e-3
    p_uncond: float = 0.1
    classifier_iters: int = 400
    seed: int = 0

    def key(self) -> str:
        """A short hash of the recipe and VERSION, the cache key."""
        text = json.dumps({"version": VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


DEFAULT = Recipe()
LARGE = Recipe(hidden=128, layers=2, iters=2000, classifier_iters=1000)
RECIPES = {"default": DEFAULT, "large": LARGE}


def load_images() -> tuple[torch.Tensor, torch.Tensor]:
    """The 1,797 digits as (N, 1, 8, 8) floats in [-1, 1] and their labels."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 8.0 - 1.0
    return x, torch.tensor(data.target, dtype=torch.long)


def halves(n: int, seed: int = 1234) -> tuple[torch.Tensor, torch.Tensor]:
    """Two disjoint index halves of ``n`` items (the verifier's and the judge's data)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[: n // 2], perm[n // 2:]


def linear_alphas_cumprod(steps: int) -> torch.Tensor:
    """ᾱ_t of DDPM's linear β schedule (1e-4 to 0.02 over ``steps``, as in Ho et al.)."""
    betas = torch.linspace(1e-4, 0.02, steps, dtype=torch.float64)
    return torch.cumprod(1.0 - betas, 0).float()


def time_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class DigitsDenoiser(nn.Module):
    """ε(x_t, t, label): an MLP over the flattened 8×8 image with time and label embeddings."""

    def __init__(self, hidden: int, layers: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.label = nn.Embedding(CLASSES + 1, hidden)
        self.time = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.inp = nn.Linear(64, hidden)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, 2 * hidden), nn.SiLU(),
                          nn.Linear(2 * hidden, hidden)) for _ in range(layers))
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, 64))

    def forward(self, x: torch.Tensor, t: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        """Predict the noise in ``x`` (B, 1, 8, 8) at timesteps ``t`` for ``label``."""
        h = self.inp(x.flatten(1)) + self.time(time_embedding(t, self.hidden)) + self.label(label)
        for block in self.blocks:
            h = h + block(h)
        return self.out(h).view(-1, 1, 8, 8)


class MLPClassifier(nn.Module):
    """The verifier's architecture: a two-layer MLP over pixels."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits of images in [-1, 1]."""
        return self.net(x)


class ConvClassifier(nn.Module):
    """The judge's architecture: two convolutions and a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 16, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits of images in [-1, 1]."""
        return self.net(x)


def param_count(module: nn.Module) -> int:
    """Number of parameters of ``module``."""
    return sum(p.numel() for p in module.parameters())


@dataclass
class DigitsPack:
    """The trained built-in pack: denoiser, its ᾱ schedule, verifier and judge."""

    recipe: Recipe
    denoiser: DigitsDenoiser
    alphas_cumprod: torch.Tensor
    verifier: MLPClassifier
    judge: ConvClassifier
    stats: dict[str, float]


Progress = Callable[[str, int, int], None]


def train_denoiser(recipe: Recipe, x: torch.Tensor, y: torch.Tensor,
                   progress: Progress | None = None) -> DigitsDenoiser:
    """Train the ε-predictor with the DDPM simple loss, seeded and single-threaded-friendly."""
    gen = torch.Generator().manual_seed(recipe.seed)
    torch.manual_seed(recipe.seed)
    model = DigitsDenoiser(recipe.hidden, recipe.layers)
    ab = linear_alphas_cumprod(recipe.train_steps)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=recipe.iters)
    for it in range(recipe.iters):
        idx = torch.randint(0, len(x), (recipe.batch,), generator=gen)
        x0, label = x[idx], y[idx].clone()
        label[torch.rand(recipe.batch, generator=gen) < recipe.p_uncond] = NULL_LABEL
        t = torch.randint(0, recipe.train_steps, (recipe.batch,), generator=gen)
        eps = torch.randn(x0.shape, generator=gen)
        a = ab[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
        loss = (model(xt, t.float(), label) - eps).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if progress and (it + 1) % 100 == 0:
            progress("denoiser", it + 1, recipe.iters)
    return model.eval()


def train_classifier(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, iters: int,
                     seed: int, name: str, progress: Progress | None = None) -> nn.Module:
    """Train a classifier with light noise augmentation so it can read imperfect samples."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    for it in range(iters):
        idx = torch.randint(0, len(x), (128,), generator=gen)
        xb = x[idx] + 0.1 * torch.randn(x[idx].shape, generator=gen)
        loss = nn.functional.cross_entropy(model(xb), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if progress and (it + 1) % 100 == 0:
            progress(name, it + 1, iters)
    return model.eval()


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy of a classifier."""
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def pack_path(recipe: Recipe = DEFAULT) -> Path:
    """Where the pack trained by ``recipe`` is cached."""
    return cache_dir() / f"digits-diffusion-{recipe.key()}.pt"


def train(recipe: Recipe = DEFAULT, progress: Progress | None = None) -> DigitsPack:
    """Train the denoiser, the verifier (half A, MLP) and the judge (half B, CNN)."""
    x, y = load_images()
    a, b = halves(len(x))
    denoiser = train_denoiser(recipe, x, y, progress)
    verifier = train_classifier(MLPClassifier(), x[a], y[a], iters=recipe.classifier_iters,
                                seed=recipe.seed + 1, name="verifier", progress=progress)
    judge = train_classifier(ConvClassifier(), x[b], y[b], iters=recipe.classifier_iters,
                             seed=recipe.seed + 2, name="judge", progress=progress)
    stats = {"verifier_heldout_accuracy": accuracy(verifier, x[b], y[b]),
             "judge_heldout_accuracy": accuracy(judge, x[a], y[a])}
    return DigitsPack(recipe, denoiser, linear_alphas_cumprod(recipe.train_steps),
                      verifier, judge, stats)  # type: ignore[arg-type]


def load(recipe: Recipe = DEFAULT, *, progress: Progress | None = None,
         threads: int | None = 2) -> DigitsPack:
    """The cached pack for ``recipe``, training and caching it first if it is missing."""
    path = pack_path(recipe)
    if path.is_file():
        state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
        denoiser = DigitsDenoiser(recipe.hidden, recipe.layers)
        denoiser.load_state_dict(state["denoiser"])
        verifier, judge = MLPClassifier(), ConvClassifier()
        verifier.load_state_dict(state["verifier"])
        judge.load_state_dict(state["judge"])
        return DigitsPack(recipe, denoiser.eval(), linear_alphas_cumprod(recipe.train_steps),
                          verifier.eval(), judge.eval(), dict(state["stats"]))
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        pack = train(recipe, progress)
    finally:
        torch.set_num_threads(before)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"denoiser": pack.denoiser.state_dict(), "verifier": pack.verifier.state_dict(),
                "judge": pack.judge.state_dict(), "stats": pack.stats,
                "recipe": asdict(recipe)}, tmp)
    tmp.replace(path)
    return pack
