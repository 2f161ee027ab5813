"""Verifiers on CLIP through ``transformers``: CLIPScore and a LAION-style aesthetic predictor.

* ``clip:path=…``: CLIPScore (Hessel et al., 2021), 2.5 · max(cos(image, prompt), 0), capped
  at 1: text–image alignment, needs the problem's prompt.
* ``aesthetic:path=…,head=…``: the LAION aesthetic predictor's MLP over L2-normalised CLIP
  image embeddings (ratings 1-10, mapped to [0, 1]); needs no prompt.

Both load a ``CLIPModel`` (and tokenizer) from a local directory or the hub.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, Field

from testtime.diffusion.base import DiffusionError, DiffusionProblem, verifiers
from testtime.registry import OPERATOR

MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


def _load_clip(path: str, device: str) -> Any:
    try:
        from transformers import CLIPModel
    except ImportError as exc:
        raise DiffusionError("CLIP verifiers need pip install 'testtime[diffusion]'") from exc
    loader: Any = CLIPModel
    try:
        return loader.from_pretrained(path).to(device).eval()
    except (OSError, ValueError) as exc:
        raise DiffusionError(f"cannot load CLIP model {path!r}: {exc}") from None


def pixels(model: Any, images: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] resized and normalised as CLIP's image processor would."""
    size = model.config.vision_config.image_size
    x = images.float()
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bicubic",
                                        align_corners=False).clamp(0.0, 1.0)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return ((x - mean) / std).to(model.device)


def image_embeds(model: Any, images: torch.Tensor) -> torch.Tensor:
    """L2-normalised CLIP image embeddings."""
    out = model.get_image_features(pixel_values=pixels(model, images))
    out = getattr(out, "pooler_output", out)
    return torch.nn.functional.normalize(out.float(), dim=-1)


def _params(module: Any) -> float:
    return float(sum(p.numel() for p in module.parameters()))


class ClipScore:
    """CLIPScore of each image against the problem's prompt, in [0, 1]."""

    name = "clip"
    needs = frozenset({"prompt"})

    def __init__(self, path: str, device: str) -> None:
        from transformers import AutoTokenizer

        self.model = _load_clip(path, device)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.flops_per_pass: float | None = 2.0 * _params(self.model.vision_model)

    def score(self, images: torch.Tensor, problem: DiffusionProblem) -> torch.Tensor:
        """2.5 · max(cos, 0), capped at 1."""
        tokens = self.tokenizer([problem.prompt or ""], padding=True, truncation=True,
                                return_tensors="pt").to(self.model.device)
        text = self.model.get_text_features(**tokens)
        text = torch.nn.functional.normalize(getattr(text, "pooler_output", text).float(), dim=-1)
        cos = image_embeds(self.model, images) @ text[0]
        return (2.5 * cos.clamp(min=0.0)).clamp(max=1.0).cpu()


class AestheticHead(torch.nn.Module):
    """The LAION aesthetic predictor's MLP (its state-dict keys are ``layers.N.*``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.layers = torch.nn.Sequential(
            torch.nn.Linear(dim, 1024), torch.nn.Dropout(0.2), torch.nn.Linear(1024, 128),
            torch.nn.Dropout(0.2), torch.nn.Linear(128, 64), torch.nn.Dropout(0.1),
            torch.nn.Linear(64, 16), torch.nn.Linear(16, 1))

    def forward(self, embeds: torch.Tensor) -> torch.Tensor:
        """Ratings (about 1-10) of normalised image embeddings."""
        out: torch.Tensor = self.layers(embeds)[:, 0]
        return out


class Aesthetic:
    """A LAION-style aesthetic rating of each image, (rating − 1) / 9 in [0, 1]."""

    name = "aesthetic"
    needs: frozenset[str] = frozenset()

    def __init__(self, path: str, head: str, device: str) -> None:
        self.model = _load_clip(path, device)
        self.head = AestheticHead(self.model.config.projection_dim)
        try:
            if head.endswith(".safetensors"):
                from safetensors.torch import load_file

                state = load_file(head)
            else:
                state = torch.load(head, map_location="cpu", weights_only=True)
            self.head.load_state_dict(state)
        except (OSError, RuntimeError) as exc:
            raise DiffusionError(f"cannot load aesthetic head {head!r}: {exc}") from None
        self.head = self.head.to(device).eval()
        self.flops_per_pass: float | None = 2.0 * (_params(self.model.vision_model)
                                                   + _params(self.head))

    def score(self, images: torch.Tensor, problem: DiffusionProblem) -> torch.Tensor:
        """The head's rating of each image's normalised CLIP embedding, mapped to [0, 1]."""
        rating = self.head(image_embeds(self.model, images))
        return ((rating.float() - 1.0) / 9.0).clamp(0.0, 1.0).cpu()


@verifiers.register("clip")
class ClipSettings(BaseModel):
    """CLIPScore against the prompt (``clip:path=openai/clip-vit-base-patch32``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    needs: ClassVar[frozenset[str]] = ClipScore.needs

    path: Annotated[str, OPERATOR] = Field(description="CLIP directory or hub id")
    device: str = "cpu"

    def load(self) -> ClipScore:
        """Load the model and tokenizer."""
        return ClipScore(self.path, self.device)


@verifiers.register("aesthetic")
class AestheticSettings(BaseModel):
    """LAION aesthetic predictor: a CLIP model and the MLP head's weights file."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    needs: ClassVar[frozenset[str]] = Aesthetic.needs

    path: Annotated[str, OPERATOR] = Field(description="CLIP directory or hub id")
    head: Annotated[str, OPERATOR] = Field(description="the head's .pth or .safetensors")
    device: str = "cpu"

    def load(self) -> Aesthetic:
        """Load the CLIP model and the head."""
        return Aesthetic(self.path, self.head, self.device)
