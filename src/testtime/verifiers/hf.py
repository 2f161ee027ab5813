"""Loading Hugging Face transformers reward models once, and running them off the event loop."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from testtime.budget import forward_flops
from testtime.verifiers.base import VerifyContext

_LOCK = threading.Lock()
_RUN = threading.Lock()
_LOADED: dict[tuple[str, str, str, str, bool], tuple[Any, Any]] = {}


class RewardModelError(RuntimeError):
    """A reward model that cannot be loaded or run (missing extra, bad path, bad output)."""


def torch_and_transformers() -> tuple[Any, Any]:
    """Import torch and transformers, or explain which extra to install."""
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise RewardModelError(
            "transformers reward models need the 'hf' extra: pip install 'testtime[hf]'"
        ) from exc
    return torch, transformers


def load(path: str, auto_class: str, *, device: str = "cpu", dtype: str = "auto",
         trust_remote_code: bool = False) -> tuple[Any, Any]:
    """(tokenizer, model) for a local directory or hub id, loaded once per process.

    A checkpoint whose config maps ``AutoModel`` to its own code (Qwen2.5-Math-PRM) is loaded
    through that code when ``trust_remote_code`` is set; otherwise ``auto_class`` is used.
    """
    key = (path, auto_class, device, dtype, trust_remote_code)
    with _LOCK:
        if key in _LOADED:
            return _LOADED[key]
        torch, tf = torch_and_transformers()
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            config = tf.AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
            remote = trust_remote_code and "AutoModel" in (getattr(config, "auto_map", None) or {})
            cls = tf.AutoModel if remote else getattr(tf, auto_class)
            torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
            model = cls.from_pretrained(path, torch_dtype=torch_dtype,
                                        trust_remote_code=trust_remote_code)
            tokenizer = tf.AutoTokenizer.from_pretrained(path,
                                                         trust_remote_code=trust_remote_code)
        except (OSError, ValueError) as exc:
            where = "directory" if Path(path).exists() else "hub id (no network here?)"
            raise RewardModelError(f"cannot load reward model {path!r} ({where}): {exc}") from None
        model.to(device).eval()
        _LOADED[key] = (tokenizer, model)
        return tokenizer, model


def logits_of(model: Any, encoded: Any) -> Any:
    """Run the model without gradients and return its first output's logits (batch 0)."""
    torch, _ = torch_and_transformers()
    with torch.no_grad():
        out = model(**{k: v.to(model.device) for k, v in encoded.items()})
    logits = getattr(out, "logits", None)
    if logits is None:
        logits = out[0]
    return logits[0].float().cpu()


def billed_logits(model: Any, encoded: Any, ctx: VerifyContext | None = None) -> Any:
    """``logits_of`` as one forward pass planned and billed to ``ctx``; one pass runs at a time
    in this process, whichever reward model it is."""
    tokens = int(encoded["input_ids"].shape[-1])
    with (ctx or VerifyContext()).forward(tokens, forward_cost(model, tokens)), _RUN:
        return logits_of(model, encoded)


async def off_loop(fn: Any, *args: Any) -> Any:
    """Run blocking model code in a worker thread."""
    return await asyncio.to_thread(fn, *args)


def forward_cost(model: Any, tokens: int) -> float | None:
    """FLOPs of one forward pass of a transformers ``model`` over ``tokens`` inputs.

    From the model's own parameter count (embeddings left out: a lookup, not a matmul) and
    its config's layers and width; None when the model cannot say.
    """
    try:
        params = float(model.num_parameters(exclude_embeddings=True))
    except (AttributeError, TypeError):
        return None
    config = getattr(model, "config", None)
    layers = int(getattr(config, "num_hidden_layers", 0) or 0)
    width = int(getattr(config, "hidden_size", 0) or 0)
    return forward_flops(params, tokens, layers, width)
