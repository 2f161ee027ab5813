"""Budget (limits), Ledger (what was spent) and CostModel (FLOPs and memory traffic).

Every strategy spends through one Ledger against one Budget, so "budget" means the same thing
for every algorithm. Generated tokens and calls are hard limits: a call that could overrun them
is shrunk or refused before it starts. Total tokens, FLOPs and seconds are checked before each
call against what is already spent plus the call's worst case as far as it can be known.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from testtime.types import Generation, Usage


class BudgetExhausted(Exception):
    """Raised when no further call fits in the budget; strategies return their best so far."""


class Budget(BaseModel):
    """Limits for one problem. ``None`` means unlimited."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    generated_tokens: int | None = Field(default=None, ge=1)
    total_tokens: int | None = Field(default=None, ge=1)
    calls: int | None = Field(default=None, ge=1)
    seconds: float | None = Field(default=None, gt=0)
    flops: float | None = Field(default=None, gt=0)

    @classmethod
    def parse(cls, text: str | None) -> Budget:
        """Parse ``tokens=4096,calls=10`` style text (``tokens`` means generated tokens)."""
        if not text:
            return cls()
        fields: dict[str, float] = {}
        aliases = {"tokens": "generated_tokens", "generated": "generated_tokens",
                   "total": "total_tokens"}
        for part in text.split(","):
            key, sep, value = part.partition("=")
            key = aliases.get(key.strip(), key.strip())
            if not sep or key not in cls.model_fields:
                raise ValueError(
                    f"bad budget item {part!r}: expected one of "
                    f"{sorted(set(cls.model_fields) | set(aliases))} as key=value"
                )
            try:
                fields[key] = float(value)
            except ValueError:
                raise ValueError(f"bad budget value {value!r} for {key}: expected a number")\
                    from None
        return cls.model_validate(
            {k: (int(v) if k != "seconds" and k != "flops" else v) for k, v in fields.items()}
        )


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

    def prefill_flops(self, new_tokens: int, cached_tokens: int) -> float:
        """FLOPs to evaluate ``new_tokens`` prompt tokens after ``cached_tokens`` cached ones."""
        if self.shape is None or new_tokens <= 0:
            return 0.0
        s = self.shape
        positions = _sum_range(cached_tokens, cached_tokens + new_tokens)
        return 2.0 * s.params * new_tokens + 4.0 * s.n_layers * s.d_model * positions

    def decode_flops(self, context: int, generated: int) -> float:
        """FLOPs to generate ``generated`` tokens after a ``context``-token prompt."""
        if self.shape is None or generated <= 0:
            return 0.0
        s = self.shape
        positions = _sum_range(context, context + generated)
        return 2.0 * s.params * generated + 4.0 * s.n_layers * s.d_model * positions

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


@dataclass
class Ledger:
    """What one problem has spent so far, checked against its Budget. Thread-safe."""

    budget: Budget = field(default_factory=Budget)
    cost: CostModel = field(default_factory=CostModel)
    usage: Usage = field(default_factory=Usage)
    started: float = field(default_factory=time.monotonic)
    exhausted: bool = False
    reserved_tokens: int = 0
    reserved_calls: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def elapsed(self) -> float:
        """Wall seconds since the ledger was opened."""
        return time.monotonic() - self.started

    def remaining_generated(self) -> int | None:
        """Generated tokens still allowed, or None when unlimited."""
        limits = []
        b, u = self.budget, self.usage
        if b.generated_tokens is not None:
            limits.append(b.generated_tokens - u.generated_tokens - self.reserved_tokens)
        if b.total_tokens is not None:
            limits.append(b.total_tokens - u.total_tokens - self.reserved_tokens)
        return max(min(limits), 0) if limits else None

    def plan(self, n: int, max_tokens: int, prompt_estimate: int = 0) -> tuple[int, int]:
        """Shrink a call of ``n`` samples × ``max_tokens`` so its worst case fits the budget.

        Returns the (n, max_tokens) that fit; raises BudgetExhausted when nothing fits.
        """
        with self._lock:
            b, u = self.budget, self.usage
            if b.calls is not None and u.calls + self.reserved_calls >= b.calls:
                return self._exhaust("calls")
            if b.seconds is not None and self.elapsed() >= b.seconds:
                return self._exhaust("seconds")
            if b.flops is not None and u.flops >= b.flops:
                return self._exhaust("flops")
            left = self.remaining_generated()
            if left is not None and b.total_tokens is not None:
                left = min(left, b.total_tokens - u.total_tokens - prompt_estimate)
            if left is None:
                return n, max_tokens
            if left <= 0:
                return self._exhaust("tokens")
            if n * max_tokens <= left:
                return n, max_tokens
            if left >= max_tokens:
                return left // max_tokens, max_tokens
            return 1, left

    def reserve(self, tokens: int) -> None:
        """Hold a planned call's worst case so concurrent calls cannot overrun the budget."""
        with self._lock:
            self.reserved_tokens += tokens
            self.reserved_calls += 1

    def release(self, tokens: int) -> None:
        """Drop a reservation once its call has been recorded (or has failed)."""
        with self._lock:
            self.reserved_tokens -= tokens
            self.reserved_calls -= 1

    def _exhaust(self, what: str) -> tuple[int, int]:
        self.exhausted = True
        raise BudgetExhausted(f"budget for {what} is spent")

    def record(self, gen: Generation, *, verifier: bool = False) -> Usage:
        """Add one backend call to the ledger and return its own Usage."""
        flops, traffic = self.cost.of_generation(gen)
        tokens = gen.prompt_tokens + gen.generated_tokens
        step = Usage(
            prompt_tokens=0 if verifier else gen.prompt_tokens,
            cached_tokens=0 if verifier else gen.cached_tokens,
            generated_tokens=0 if verifier else gen.generated_tokens,
            verifier_tokens=tokens if verifier else 0,
            calls=0 if verifier else 1,
            verifier_calls=1 if verifier else 0,
            verifier_seconds=gen.seconds if verifier else 0.0,
            flops=flops,
            memory_bytes=traffic,
            counted_by=(gen.counted_by,),
        )
        self.add(step)
        return step

    def add(self, usage: Usage) -> None:
        """Add a usage that was measured elsewhere (e.g. a verifier run by a sub-process)."""
        with self._lock:
            self.usage = self.usage + usage

    def close(self) -> Usage:
        """Final usage, with wall seconds set to the time since the ledger opened."""
        return self.usage.model_copy(update={"seconds": self.elapsed()})
