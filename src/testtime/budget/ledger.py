"""The Ledger: what one problem has spent, planned and recorded against its Budget.

Every model call of a problem, the policy's and every verifier's, is planned and recorded by
one Ledger against one Budget, so "budget" means the same thing for every algorithm. A call is
planned at its worst case (its prompt's estimated size plus ``n × max_tokens``, and the cost
model's FLOPs for that) and shrunk or refused when that could overrun a limit; the worst case
stays reserved until the call is recorded, so concurrent calls cannot overrun together. Work
that is stopped (cancelled, timed out) is recorded up to where it stopped.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from testtime.budget.cost import CostModel
from testtime.budget.limits import Budget, BudgetExhausted
from testtime.types import Generation, Usage


@dataclass(frozen=True)
class Plan:
    """A call the ledger admitted: its (maybe shrunk) size and the worst case it holds."""

    n: int
    max_tokens: int
    prompt_tokens: int
    flops: float
    verifier: bool = False
    shrunk: bool = False

    @property
    def tokens(self) -> int:
        """Worst-case tokens: the prompt plus every sample at full length."""
        return self.prompt_tokens + self.n * self.max_tokens


@dataclass
class Ledger:
    """What one problem has spent so far, checked against its Budget. Thread-safe.

    ``plan`` admits a call at its worst case and holds it; ``settle`` records what the call
    really cost (or, for a call that failed, only drops the hold). ``limit`` names the first
    limit that refused or shrank a call.
    """

    budget: Budget = field(default_factory=Budget)
    cost: CostModel = field(default_factory=CostModel)
    usage: Usage = field(default_factory=Usage)
    started: float = field(default_factory=time.monotonic)
    exhausted: bool = False
    limit: str | None = None
    reserved_tokens: int = 0
    reserved_prompt: int = 0
    reserved_verifier: int = 0
    reserved_calls: int = 0
    reserved_flops: float = 0.0
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def elapsed(self) -> float:
        """Wall seconds since the ledger was opened."""
        return time.monotonic() - self.started

    def seconds_left(self) -> float | None:
        """Seconds until the ``seconds`` limit, or None without one."""
        if self.budget.seconds is None:
            return None
        return max(self.budget.seconds - self.elapsed(), 0.0)

    def meet(self, limit: str) -> None:
        """Mark the budget exhausted by ``limit`` (the first one met is kept)."""
        with self._lock:
            self.exhausted = True
            self.limit = self.limit or limit

    def _exhaust(self, limit: str, detail: str = "") -> BudgetExhausted:
        self.meet(limit)
        return BudgetExhausted(limit, detail)

    def remaining_generated(self) -> int | None:
        """Tokens a call with no prompt could still generate, or None when unlimited."""
        room = self._room(0, verifier=False)
        return None if room is None else max(room[0], 0)

    def out_of_tokens(self) -> bool:
        """Whether no token is left to generate under a token limit (a caller that sized its
        calls to exactly what was left has spent it); the budget is then marked exhausted."""
        room = self._room(0, verifier=False)
        if room is not None and room[0] <= 0:
            self.meet(room[1])
            return True
        return False

    def _room(self, prompt: int, *, verifier: bool) -> tuple[int, str] | None:
        """Tokens left to generate after a ``prompt``-token prompt, and the limit that binds."""
        b, u = self.budget, self.usage
        rooms: list[tuple[int, str]] = []
        if b.generated_tokens is not None:
            rooms.append((b.generated_tokens - u.generated_tokens - u.verifier_generated_tokens
                          - self.reserved_tokens, "generated_tokens"))
        if b.total_tokens is not None:
            rooms.append((b.total_tokens - u.total_tokens - self.reserved_tokens
                          - self.reserved_prompt - prompt, "total_tokens"))
        if verifier and b.verifier_tokens is not None:
            rooms.append((b.verifier_tokens - u.verifier_tokens - self.reserved_verifier
                          - prompt, "verifier_tokens"))
        return min(rooms) if rooms else None

    def plan(self, n: int, max_tokens: int, prompt_estimate: int = 0, *,
             verifier: bool = False, cost: CostModel | None = None,
             flops: float | None = None) -> Plan:
        """Admit a call of ``n`` samples × ``max_tokens`` after a ``prompt_estimate`` prompt.

        The call is shrunk (fewer samples, then fewer tokens) until its worst case fits every
        limit, and that worst case is held until ``settle``. ``max_tokens=0`` plans a forward
        pass that generates nothing (a reward model). ``cost`` is the called model's cost
        model (default: the policy's); ``flops`` gives the call's FLOPs directly instead.
        Raises BudgetExhausted, naming the limit, when nothing fits.
        """
        cost = cost or self.cost
        with self._lock:
            b, u = self.budget, self.usage
            if b.calls is not None and (u.calls + u.verifier_calls
                                        + self.reserved_calls) >= b.calls:
                raise self._exhaust("calls")
            if b.seconds is not None and self.elapsed() >= b.seconds:
                raise self._exhaust("seconds")
            shrunk = False
            room = self._room(prompt_estimate, verifier=verifier)
            if room is not None:
                left, limit = room
                if left < (1 if max_tokens else 0):
                    raise self._exhaust(limit)
                if max_tokens and n * max_tokens > left:
                    shrunk = True
                    if left >= max_tokens:
                        n = left // max_tokens
                    else:
                        n, max_tokens = 1, left
                    self.meet(limit)
            if flops is not None:
                if b.flops is not None and flops > b.flops - u.flops - self.reserved_flops:
                    raise self._exhaust("flops")
                plan = Plan(n=n, max_tokens=max_tokens, prompt_tokens=prompt_estimate,
                            flops=flops, verifier=verifier, shrunk=shrunk)
                self._hold(plan, +1)
                return plan
            flops = cost.call_flops(prompt_estimate, n, max_tokens)
            if b.flops is not None:
                if not cost.known:
                    raise self._exhaust("flops", "this model's FLOPs are unknown (give the "
                                                 "backend the model's shape, e.g. params=)")
                fitted = self._fit_flops(cost, prompt_estimate, n, max_tokens)
                if fitted is None:
                    raise self._exhaust("flops")
                if fitted[:2] != (n, max_tokens):
                    shrunk = True
                    self.meet("flops")
                n, max_tokens, flops = fitted
            plan = Plan(n=n, max_tokens=max_tokens, prompt_tokens=prompt_estimate, flops=flops,
                        verifier=verifier, shrunk=shrunk)
            self._hold(plan, +1)
            return plan

    def _fit_flops(self, cost: CostModel, prompt: int, n: int,
                   max_tokens: int) -> tuple[int, int, float] | None:
        """The largest (n, max_tokens, flops) whose worst case fits the FLOPs left, if any."""
        assert self.budget.flops is not None
        left = self.budget.flops - self.usage.flops - self.reserved_flops
        while n > 1 and cost.call_flops(prompt, n, max_tokens) > left:
            n -= 1
        if cost.call_flops(prompt, n, max_tokens) <= left:
            return n, max_tokens, cost.call_flops(prompt, n, max_tokens)
        lo, hi = (1, max_tokens - 1) if max_tokens else (0, -1)
        if hi < lo or cost.call_flops(prompt, 1, lo) > left:
            return None
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if cost.call_flops(prompt, 1, mid) <= left:
                lo = mid
            else:
                hi = mid - 1
        return 1, lo, cost.call_flops(prompt, 1, lo)

    def _hold(self, plan: Plan, sign: int) -> None:
        self.reserved_tokens += sign * plan.n * plan.max_tokens
        self.reserved_prompt += sign * plan.prompt_tokens
        if plan.verifier:
            self.reserved_verifier += sign * plan.tokens
        self.reserved_calls += sign
        self.reserved_flops += sign * plan.flops

    def settle(self, plan: Plan, gen: Generation | None = None, *, cut: bool = False,
               cost: CostModel | None = None) -> Usage:
        """Drop ``plan``'s hold and record ``gen`` (None: the call failed; nothing to add)."""
        with self._lock:
            self._hold(plan, -1)
            if gen is None:
                return Usage()
            return self.record(gen, verifier=plan.verifier, cut=cut, cost=cost)

    def record(self, gen: Generation, *, verifier: bool = False, cut: bool = False,
               stopped: bool = False, cost: CostModel | None = None) -> Usage:
        """Add one backend call to the ledger and return its own Usage.

        ``cut`` marks a call stopped before it finished; ``gen`` then holds what the engine
        produced up to the stop. ``stopped`` marks a cut trace its consumer stopped on purpose.
        """
        cost = cost or self.cost
        flops, traffic = cost.of_generation(gen)
        tokens = gen.prompt_tokens + gen.generated_tokens
        step = Usage(
            prompt_tokens=0 if verifier else gen.prompt_tokens,
            cached_tokens=0 if verifier else gen.cached_tokens,
            generated_tokens=0 if verifier else gen.generated_tokens,
            verifier_tokens=tokens if verifier else 0,
            verifier_prompt_tokens=gen.prompt_tokens if verifier else 0,
            verifier_generated_tokens=gen.generated_tokens if verifier else 0,
            calls=0 if verifier else 1,
            verifier_calls=1 if verifier else 0,
            verifier_seconds=gen.seconds if verifier else 0.0,
            verifier_flops=flops if verifier else 0.0,
            cut_calls=int(cut),
            stopped_traces=int(cut and stopped) * len(gen.completions),
            stopped_tokens=gen.generated_tokens if cut and stopped else 0,
            flops=flops,
            flops_known=cost.known,
            memory_bytes=traffic,
            counted_by=(gen.counted_by,),
        )
        self.add(step)
        return step

    def record_pass(self, plan: Plan, tokens: int, seconds: float, flops: float | None,
                    counted_by: str) -> Usage:
        """Record a reward model's forward pass over ``tokens`` inputs (``flops`` None: unknown)."""
        step = Usage(verifier_tokens=tokens, verifier_prompt_tokens=tokens, verifier_calls=1,
                     verifier_passes=1,
                     verifier_seconds=seconds, verifier_flops=flops or 0.0, flops=flops or 0.0,
                     flops_known=flops is not None, counted_by=(counted_by,))
        with self._lock:
            self._hold(plan, -1)
            self.add(step)
        return step

    def plan_nfes(self, n: int, flops: float | None = None) -> None:
        """Admit one batched denoiser call of ``n`` forward passes (``flops`` None: unknown).

        Raises BudgetExhausted, naming the limit, when the call would overrun ``nfes``,
        ``calls``, ``seconds`` or ``flops``; denoiser calls run one at a time, so nothing is held.
        """
        with self._lock:
            b, u = self.budget, self.usage
            if b.nfes is not None and u.nfes + n > b.nfes:
                raise self._exhaust("nfes", f"{n} more would pass {b.nfes}")
            if b.calls is not None and u.calls + u.verifier_calls + self.reserved_calls >= b.calls:
                raise self._exhaust("calls")
            if b.seconds is not None and self.elapsed() >= b.seconds:
                raise self._exhaust("seconds")
            if b.flops is not None and (flops is None or
                                        u.flops + self.reserved_flops + flops > b.flops):
                raise self._exhaust("flops", "" if flops is not None else
                                    "this denoiser's FLOPs are unknown")

    def record_nfes(self, n: int, seconds: float, flops: float | None,
                    counted_by: str = "denoiser") -> Usage:
        """Record one batched denoiser call of ``n`` forward passes and return its Usage."""
        step = Usage(nfes=n, calls=1, denoiser_seconds=seconds, flops=flops or 0.0,
                     flops_known=flops is not None, counted_by=(counted_by,))
        self.add(step)
        return step

    def record_sandbox(self, runs: int, seconds: float, counted_by: str = "sandbox") -> Usage:
        """Record ``runs`` programs run in the code sandbox for the policy (a program sample,
        a tool call), taking ``seconds`` of wall time in all, and return their Usage."""
        step = Usage(sandbox_runs=runs, sandbox_seconds=seconds, counted_by=(counted_by,))
        self.add(step)
        return step

    def record_tool(self, runs: int, seconds: float, counted_by: str = "tools") -> Usage:
        """Record ``runs`` tool calls a strategy made, taking ``seconds`` of wall time in all
        (a ``python`` call's program is recorded by ``record_sandbox`` as well)."""
        step = Usage(tool_runs=runs, tool_seconds=seconds, counted_by=(counted_by,))
        self.add(step)
        return step

    def add(self, usage: Usage) -> None:
        """Add a usage that was measured elsewhere (e.g. a verifier run by a sub-process)."""
        with self._lock:
            self.usage = self.usage + usage

    def check_after(self) -> None:
        """Mark the budget exhausted if what was recorded went past a limit (a stopped call
        reported late, or a server that generated more than it was asked to)."""
        b, u = self.budget, self.usage
        reached = [
            ("generated_tokens", b.generated_tokens, u.generated_tokens
             + u.verifier_generated_tokens),
            ("total_tokens", b.total_tokens, u.total_tokens),
            ("verifier_tokens", b.verifier_tokens, u.verifier_tokens),
            ("calls", b.calls, u.calls + u.verifier_calls),
            ("flops", b.flops, u.flops),
            ("nfes", b.nfes, u.nfes),
        ]
        for name, cap, spent in reached:
            if cap is not None and spent > cap:
                self.meet(name)
                return

    def close(self) -> Usage:
        """Final usage, with wall seconds set to the time since the ledger opened."""
        return self.usage.model_copy(update={"seconds": self.elapsed()})
