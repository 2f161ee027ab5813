"""A real engine: ``diffusers`` pipelines from a local directory or the hub, on CPU or GPU.

Pixel-space DDPM/DDIM pipelines (a ``UNet2DModel`` and a scheduler) and latent text-to-image
pipelines (Stable Diffusion, SD-Turbo: a ``UNet2DConditionModel``, a text encoder and a VAE)
are wrapped as Denoisers; the scheduler contributes its ᾱ_t and prediction type, and testtime's
own stateless sampler (sampler.py) does the stepping so that searches can branch and resample.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from testtime.diffusion.base import DiffusionError, DiffusionProblem, engines
from testtime.diffusion.paths import PREDICTIONS, VPPath
from testtime.diffusion.sampler import Sampler
from testtime.registry import OPERATOR

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@engines.register("diffusers")
class DiffusersEngine(BaseModel):
    """A diffusers pipeline by local path or hub id (``diffusers:path=stabilityai/sd-turbo``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: Annotated[str, OPERATOR] = Field(description="directory or hub id")
    device: str = "cpu"
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    height: int | None = Field(default=None, ge=8)
    width: int | None = Field(default=None, ge=8)
    steps: int = Field(default=25, ge=1, description="the engine's base step count")
    local_only: bool = False

    def load(self, progress: Any = None) -> DiffusersModel:
        """Load the pipeline (hub ids are downloaded by diffusers unless ``local_only``)."""
        try:
            from diffusers import DiffusionPipeline
        except ImportError as exc:
            raise DiffusionError("the diffusers engine needs pip install 'testtime[diffusion]'"
                                 ) from exc
        try:
            pipe = DiffusionPipeline.from_pretrained(
                self.path, torch_dtype=DTYPES[self.dtype], local_files_only=self.local_only)
        except (OSError, ValueError) as exc:
            raise DiffusionError(f"cannot load diffusers pipeline {self.path!r}: {exc}") from None
        pipe.set_progress_bar_config(disable=True)
        pipe = pipe.to(self.device)
        return DiffusersModel(self, pipe)



def _vp_path(scheduler: Any) -> tuple[VPPath, str]:
    """The scheduler's ᾱ_t and prediction type, or a DiffusionError naming what is missing."""
    ab = getattr(scheduler, "alphas_cumprod", None)
    if ab is None:
        raise DiffusionError(f"pipeline scheduler {type(scheduler).__name__} has no ᾱ_t "
                             "(alphas_cumprod); testtime searches DDPM-style UNet pipelines "
                             "(DDPM, DDIM, Stable Diffusion, SD-Turbo)")
    prediction = getattr(scheduler.config, "prediction_type", "epsilon")
    if prediction not in PREDICTIONS:
        raise DiffusionError(f"prediction type {prediction!r} is not one of {PREDICTIONS}")
    return VPPath.of(torch.as_tensor(ab)), prediction


class PixelUNet:
    """An unconditional ``UNet2DModel`` in pixel space (DDPMPipeline, DDIMPipeline)."""

    conditioning: str | None = None
    flops_per_pass: float | None = None
    sample_shape: tuple[int, ...]

    def __init__(self, name: str, unet: Any, prediction: str) -> None:
        self.name, self.unet, self.prediction = name, unet, prediction
        size = unet.config.sample_size
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        self.sample_shape = (unet.config.in_channels, h, w)

    def condition(self, problem: DiffusionProblem, guidance: float) -> Any:
        """Nothing: the model is unconditional."""
        return None

    def passes(self, guidance: float) -> int:
        """One pass per sample."""
        return 1

    def __call__(self, x: torch.Tensor, t: float, cond: Any, guidance: float) -> torch.Tensor:
        """The UNet's output at integer timestep ``t``."""
        dev, dt = self.unet.device, self.unet.dtype
        out = self.unet(x.to(dev, dt), torch.tensor(round(t), device=dev)).sample
        return out.float().cpu()

    def decode(self, x0: torch.Tensor) -> torch.Tensor:
        """[-1, 1] to [0, 1]."""
        return ((x0 + 1.0) / 2.0).clamp(0.0, 1.0)


class LatentUNet:
    """A text-conditional latent UNet with CFG (StableDiffusionPipeline and its kin)."""

    conditioning: str | None = "prompt"
    flops_per_pass: float | None = None
    sample_shape: tuple[int, ...]

    def __init__(self, name: str, pipe: Any, prediction: str, height: int | None,
                 width: int | None) -> None:
        self.name, self.pipe, self.prediction = name, pipe, prediction
        scale = pipe.vae_scale_factor
        size = pipe.unet.config.sample_size
        h = (height or size * scale) // scale
        w = (width or size * scale) // scale
        self.sample_shape = (pipe.unet.config.in_channels, h, w)

    def condition(self, problem: DiffusionProblem, guidance: float) -> Any:
        """The prompt's (and, with CFG, the empty prompt's) text embeddings, computed once."""
        if problem.prompt is None:
            raise DiffusionError(f"model {self.name!r} is text-to-image: problem "
                                 f"{problem.id!r} needs a prompt")
        with torch.no_grad():
            pos, neg = self.pipe.encode_prompt(problem.prompt, self.pipe.unet.device, 1,
                                               guidance > 1.0)
        return pos, neg

    def passes(self, guidance: float) -> int:
        """2 with classifier-free guidance (guidance > 1), else 1."""
        return 2 if guidance > 1.0 else 1

    def __call__(self, x: torch.Tensor, t: float, cond: Any, guidance: float) -> torch.Tensor:
        """The guided noise prediction at timestep ``t``."""
        unet = self.pipe.unet
        pos, neg = cond
        n = len(x)
        x = x.to(unet.device, unet.dtype)
        ts = torch.tensor(round(t), device=unet.device)
        if guidance <= 1.0:
            return unet(x, ts, encoder_hidden_states=pos.expand(n, -1, -1)).sample.float().cpu()
        emb = torch.cat([neg.expand(n, -1, -1), pos.expand(n, -1, -1)])
        out = unet(torch.cat([x, x]), ts, encoder_hidden_states=emb).sample.float().cpu()
        uncond, text = out[:n], out[n:]
        return uncond + guidance * (text - uncond)

    def decode(self, x0: torch.Tensor) -> torch.Tensor:
        """Latents through the VAE to images in [0, 1]."""
        vae = self.pipe.vae
        with torch.no_grad():
            img = vae.decode(x0.to(vae.device, vae.dtype) / vae.config.scaling_factor).sample
        return ((img.float().cpu() + 1.0) / 2.0).clamp(0.0, 1.0)


class DiffusersModel:
    """A loaded pipeline as an Engine: samplers over its denoiser; no verifiers of its own."""

    def __init__(self, settings: DiffusersEngine, pipe: Any) -> None:
        self.name = f"diffusers:{settings.path}"
        self.default_steps = settings.steps
        self.pipe = pipe
        self.path, prediction = _vp_path(pipe.scheduler)
        unet = getattr(pipe, "unet", None)
        if unet is None:
            raise DiffusionError(f"pipeline {type(pipe).__name__} has no UNet; testtime "
                                 "searches UNet pipelines (DDPM, DDIM, Stable Diffusion)")
        self.denoiser: PixelUNet | LatentUNet
        if getattr(pipe, "vae", None) is not None and getattr(pipe, "text_encoder", None):
            self.denoiser = LatentUNet(self.name, pipe, prediction, settings.height,
                                       settings.width)
            self.task_kind: str | None = "prompt"
            self.clip: float | None = None
        else:
            self.denoiser = PixelUNet(self.name, unet, prediction)
            self.task_kind = None
            self.clip = 1.0 if getattr(pipe.scheduler.config, "clip_sample", True) else None

    def sampler(self, scheduler: str = "ddim", guidance: float = 1.0) -> Sampler:
        """A stateless sampler on the pipeline's ᾱ_t path."""
        return Sampler(self.denoiser, self.path, scheduler=scheduler, guidance=guidance,
                       clip=self.clip)

    def verifier(self, name: str) -> None:
        """A pipeline ships no verifier; use clip, aesthetic or another registered one."""
        return None

    def problems(self, limit: int, seed: int) -> list[DiffusionProblem]:
        """Unconditional samples, one noise seed each (text-to-image needs prompts)."""
        if self.task_kind == "prompt":
            raise DiffusionError(f"{self.name} is text-to-image: give prompts with --prompt")
        return [DiffusionProblem(id=f"sample-s{seed + i}", seed=seed + i) for i in range(limit)]
