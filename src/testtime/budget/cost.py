"""The cost model: FLOPs and memory traffic of a generation, from the model's shape.

A new compute unit (diffusion's NFEs, say) gets its own cost model here beside this one; the
Ledger asks a cost model only for a call's worst-case cost and a finished call's cost.
"""

from __future__ import annotations

from dataclasses import dataclass

from testtime.types import Generation


@dataclass(frozen=True)
class ModelShape:
    """The numbers a cost model needs about a transformer."""

    params: float
    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    weight_bytes: float
    kv_bytes_per_elem: float = 2.0

    @property
    def head_dim(self) -> int:
        return self.d_model // max(self.n_heads, 1)

    @property
    def kv_dim(self) -> int:
        """Width of one layer's key (or value) vectors."""
        return self.n_kv_heads * self.head_dim


@dataclass(frozen=True)
class CostModel:
    """FLOPs and memory traffic of a generation, from the model's shape.

    Per token: 2·params FLOPs for the weights, plus attention over the context so far
    (4·layers·d_model·context: QKᵀ and AV). Memory traffic per decode step: the weights once
    per batch step, plus the KV cache read by every sequence (the Kinetics observation that
    KV reads dominate long generations). Cached prompt tokens cost nothing.
    """

    shape: ModelShape | None = None

    @property
    def known(self) -> bool:
        """Whether FLOPs can be computed (the model's shape is known)."""
        return self.shape is not None

    def call_flops(self, prompt_tokens: int, n: int, max_tokens: int) -> float:
        """Worst-case FLOPs of a call: the whole prompt uncached, every sample at full length."""
        return self.prefill_flops(prompt_tokens, 0) + n * self.decode_flops(prompt_tokens,
                                                                            max_tokens)

    def prefill_flops(self, new_tokens: int, cached_tokens: int) -> float:
        """FLOPs to evaluate ``new_tokens`` prompt tokens after ``cached_tokens`` cached ones."""
        return self._tokens_flops(cached_tokens, new_tokens)

    def decode_flops(self, context: int, generated: int) -> float:
        """FLOPs to generate ``generated`` tokens after a ``context``-token prompt."""
        return self._tokens_flops(context, generated)

    def _tokens_flops(self, context: int, tokens: int) -> float:
        if self.shape is None or tokens <= 0:
            return 0.0
        s = self.shape
        return token_flops(s.params, tokens, s.n_layers, s.d_model, context)

    def decode_bytes(self, context: int, generated: list[int]) -> float:
        """Memory traffic to generate ``generated[i]`` tokens for each sequence of one batch."""
        if self.shape is None or not generated:
            return 0.0
        s = self.shape
        steps = max(generated)
        kv_per_token = 2.0 * s.n_layers * s.kv_dim * s.kv_bytes_per_elem
        kv_reads = sum(kv_per_token * _sum_range(context, context + g) for g in generated)
        return s.weight_bytes * steps + kv_reads

    def of_generation(self, gen: Generation) -> tuple[float, float]:
        """FLOPs and bytes of one backend call."""
        if self.shape is None:
            return 0.0, 0.0
        new_prompt = max(gen.prompt_tokens - gen.cached_tokens, 0)
        context = gen.prompt_tokens
        flops = self.prefill_flops(new_prompt, gen.cached_tokens)
        flops += sum(self.decode_flops(context, c.generated_tokens) for c in gen.completions)
        prefill_bytes = self.shape.weight_bytes if new_prompt else 0.0
        gens = [c.generated_tokens for c in gen.completions]
        return flops, prefill_bytes + self.decode_bytes(context, gens)


def _sum_range(start: int, stop: int) -> float:
    """Sum of integers in [start, stop)."""
    return (stop - start) * (start + stop - 1) / 2.0 if stop > start else 0.0


def forward_flops(params: float | None, tokens: int, n_layers: int = 0, d_model: int = 0
                  ) -> float | None:
    """FLOPs of one forward pass over ``tokens`` inputs (None when ``params`` is unknown)."""
    return None if params is None else token_flops(params, tokens, n_layers, d_model)


def token_flops(params: float, tokens: int, n_layers: int = 0, d_model: int = 0,
                context: int = 0) -> float:
    """FLOPs to evaluate ``tokens`` tokens after ``context`` earlier ones: 2·params per token
    for the weights, plus attention over every position so far (4·layers·d_model each)."""
    positions = _sum_range(context, context + tokens)
    return 2.0 * params * tokens + 4.0 * n_layers * d_model * positions
