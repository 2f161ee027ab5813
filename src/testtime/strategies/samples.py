"""The ``samples=SPEC`` option: a strategy takes its samples from another strategy's draw.

A strategy that votes on, races or filters samples (self-consistency, first-finish, DeepConf)
need not know what a sample is. With ``samples=SPEC`` its samples are whatever SPEC's strategy
draws (:meth:`~testtime.strategies.base.StrategySettings.draw`): tool-integrated traces,
programs, no-thinking answers. SPEC is built through the registry, so the strategy never names
the kind it samples, and only a strategy that declares ``draws_samples`` may be named. The
samples are drawn at the outer strategy's ``temperature`` and ``max_tokens`` unless SPEC sets
its own; how many to draw (``n``) and the sampler settings (``top_p`` …) are the outer
strategy's alone. Everything SPEC's strategy declares carries over: a sampler that runs code
is checked at the gateway's start and, as a nested spec, is open to requests only where the
operator allows it; one that does not sample whole replies makes the outer strategy refuse a
request's stop strings, logprobs, tools and response format.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import Field, PrivateAttr

from testtime.policy.pools import Pool
from testtime.registry import Nested, SpecError, build, split_spec
from testtime.strategies.base import Context, StrategySettings, strategies
from testtime.traces import Watcher
from testtime.types import Candidate, Problem, Prompt, Sampling

OUTER_ONLY = ("n", *Sampling.model_fields)
"""Options a samples spec may not set: the outer strategy's to choose."""
INHERITED = ("temperature", "max_tokens", *Sampling.model_fields)
"""Settings a sampler takes from the outer strategy where its spec leaves them unset."""


def sampler_of(spec: str, outer: StrategySettings) -> StrategySettings:
    """The strategy ``spec`` builds, to draw ``outer``'s samples; SpecError (naming the
    option) when it is unknown, draws no samples of its own, or sets what ``outer`` sets."""
    try:
        name, options = split_spec(spec)
        cls = strategies.get(name)
    except SpecError as exc:
        raise SpecError(f"samples={spec!r}: {exc}") from None
    if not getattr(cls, "draws_samples", False):
        able = ", ".join(n for n in strategies.names() if strategies.get(n).draws_samples)
        raise SpecError(f"samples={spec!r}: strategy {name!r} draws no samples of its own "
                        f"to take; these do: {able}")
    taken = sorted(set(options) & set(OUTER_ONLY))
    if taken:
        raise SpecError(f"samples={spec!r}: {', '.join(taken)} belong to the outer "
                        f"strategy {outer.registered_name!r}, not to its samples spec")
    inherited = {k: getattr(outer, k) for k in INHERITED
                 if k not in options and k in cls.model_fields}
    try:
        sampler: StrategySettings = build(strategies, spec, **inherited)
    except SpecError as exc:
        raise SpecError(f"samples={spec!r}: {exc}") from None
    return sampler


class SamplesOption(StrategySettings):
    """A strategy whose samples may come from another strategy's draw (``samples=SPEC``)."""

    samples: Annotated[str | None, Nested("strategy")] = Field(
        default=None, description="strategy spec whose draw supplies the samples (e.g. "
        "[tool-integrated:max_calls=2]); default: plain samples of the problem")
    _sampler: StrategySettings | None = PrivateAttr(default=None)

    def model_post_init(self, __context: Any) -> None:
        """Build the sampler now, so a bad ``samples`` spec fails before any work."""
        super().model_post_init(__context)
        if self.samples:
            self._sampler = sampler_of(self.samples, self)

    @property
    def sampler(self) -> StrategySettings | None:
        """The strategy that draws the samples (None: plain samples of the problem)."""
        return self._sampler

    def draw_prompt(self, problem: Problem) -> Prompt:
        """The prompt the samples are drawn from."""
        if self._sampler is not None:
            return self._sampler.draw_prompt(problem)
        return super().draw_prompt(problem)

    @property
    def draw_stop(self) -> tuple[str, ...]:
        """The samples' stop strings."""
        return self._sampler.draw_stop if self._sampler is not None else super().draw_stop

    async def draw(self, problem: Problem, ctx: Context, n: int, *, top_logprobs: int = 0,
                   watch: Watcher | None = None) -> list[Candidate]:
        """``n`` samples as the sampler draws them (plain samples without one)."""
        if self._sampler is not None:
            return await self._sampler.draw(problem, ctx, n, top_logprobs=top_logprobs,
                                            watch=watch)
        return await super().draw(problem, ctx, n, top_logprobs=top_logprobs, watch=watch)

    def offer_drawn(self, problem: Problem, ctx: Context, candidates: Sequence[Candidate]
                    ) -> None:
        """Offer drawn samples as the sampler offers its own."""
        if self._sampler is not None:
            self._sampler.offer_drawn(problem, ctx, candidates)
        else:
            super().offer_drawn(problem, ctx, candidates)

    def samples_whole_replies(self) -> bool:
        """Whole replies only where the class declares so and the sampler draws them."""
        return self.whole_replies and (self._sampler is None
                                       or self._sampler.samples_whole_replies())

    def pooled(self) -> Pool | None:
        """No pool with a sampler: its samples are not the ones the class's pool draws (the
        sampler's own strategy pools them, where it declares a pool)."""
        return None if self._sampler is not None else super().pooled()

    def check(self) -> None:
        """The sampler's check (a sandbox to run its code in) as well as its own."""
        super().check()
        if self._sampler is not None:
            self._sampler.check()
