"""Compute-optimal adaptive scaling (after Snell et al., 2024), over every strategy family.

Probe the problem with a few samples, predict its difficulty bin from how much they agree (or
from their mean verifier score), then run the strategy a fitted policy chose for that bin and
budget: majority, weighted or best-of at some k, no-thinking answers, early stopping, beam
search, revision, any registered spec. The probe draws like any pooled strategy (the policy's
``probe``): a few no-thinking answers cost a handful of tokens, and agreeing ones mark a
question that needs no chain of thought. Everything is spent through one Context, so the probe
counts against the same Budget, and the probe's samples are offered to the chosen strategy,
which reuses them when it samples the same prompt with the same settings (majority@8 after a
sampled probe draws 8 - probe more).
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, PrivateAttr

from testtime.policy import PolicyError, load_policy, measure
from testtime.strategies.base import Context, Strategy, StrategySettings, strategies
from testtime.strategies.voting import vote
from testtime.types import Problem, Result
from testtime.verifiers.base import Verifier
from testtime.verifiers.make import make_verifier


@strategies.register("adaptive")
class Adaptive(StrategySettings):
    """Probe, predict the difficulty bin, then run the policy's choice for that bin and budget.

    What it declares comes from its policy, read once when it is built: it samples whole
    replies when its probe and every choice do; it scores with its own verifier, else the
    policy's, else the caller's, else the model's confidence.
    """

    default_verifier: ClassVar[str | None] = "confidence"

    policy: str = Field(description="policy JSON written by `testtime fit-policy`, or the name "
                        "of a shipped policy")
    budget: float = Field(gt=0, description="budget per problem the policy may plan, in the "
                          "policy's unit (generated tokens unless it says otherwise)")
    _whole: bool = PrivateAttr(default=False)

    def model_post_init(self, __context: object) -> None:
        """Build its verifier and read what its policy samples (an unusable policy is
        reported when it runs)."""
        super().model_post_init(__context)
        try:
            policy = load_policy(self.policy)
        except PolicyError:
            return
        built = [policy.prober(), *(c.strategy() for row in policy.budgets.values()
                                    for c in row)]
        self._whole = all(s.samples_whole_replies() for s in built)

    def check(self) -> None:
        """PolicyError unless the policy loads."""
        load_policy(self.policy)

    def samples_whole_replies(self) -> bool:
        """Whether its probe and every choice its policy may make sample whole replies."""
        return self._whole

    def verifier_for(self, given: Verifier | None) -> Verifier | None:
        """Its own verifier, else its policy's, else ``given``, else the default."""
        spec = self.verifier or load_policy(self.policy).verifier
        return make_verifier(spec) if spec else super().verifier_for(given)

    async def run(self, problem: Problem, ctx: Context) -> Result:
        """Probe, choose, then run the choice on the same Context with the probe on offer."""
        policy = load_policy(self.policy)
        prober = policy.prober()
        probe = await prober.draw(problem, ctx, policy.probe_k)
        if policy.statistic == "score":
            probe = await ctx.score(problem, probe)
        stat = measure(policy.statistic, probe)
        bin_ = policy.predict(stat, len(problem.question))
        row, choice = policy.choose(bin_, self.budget)
        chosen: dict[str, Any] = {"probe_statistic": round(stat, 4), "predicted_bin": bin_,
                  "choice": choice.label, "choice_spec": choice.spec, "policy_budget": row}
        if ctx.exhausted:
            answer, votes = vote(probe)
            return ctx.result(problem, answer, probe, votes=votes, **chosen)
        prober.offer_drawn(problem, ctx, probe)
        picked: Strategy = choice.strategy()
        result = await ctx.delegate(picked, problem)
        return result.model_copy(update={"extra": {**result.extra, **chosen}})
