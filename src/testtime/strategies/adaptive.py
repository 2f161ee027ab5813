"""Compute-optimal adaptive scaling (after Snell et al., 2024), over every strategy family.

Probe the problem with a few samples, predict its difficulty bin from the probe's features (how
much the samples agree, the model's confidence in them, the question's length in the model's
tokens, combined as the fitted policy says), then run the strategy the policy chose for that bin
and budget: majority, weighted or best-of at some k, no-thinking answers, early stopping, beam
search, revision, any registered spec. The probe draws like any pooled strategy (the policy's
``probe``): a few no-thinking answers cost a handful of tokens, and agreeing ones mark a
question that needs no chain of thought. Everything is spent through one Context, so the probe
counts against the same Budget, and the probe's samples are offered to the chosen strategy,
which reuses them when it samples the same prompt with the same settings (majority@8 after a
sampled probe draws 8 - probe more). A budget whose bins all choose the same configuration
runs it without a probe.

The features are computed as the fit computed them from the sweep's records
(:mod:`testtime.policy.probe`): agreement and confidence of the probe's samples (scored by the
verifier that scored the sweep's probe pool), and the prompt's tokens as the engine counts them
when it reads the problem's own prompt (a one-token greedy call, billed like any other).
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, PrivateAttr

from testtime.policy import Policy, PolicyError, candidate_features, load_policy
from testtime.strategies.base import Context, Strategy, StrategySettings, strategies
from testtime.strategies.voting import vote
from testtime.types import Candidate, GenerationRequest, Problem, Result
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
        row = policy.row(self.budget)
        if not policy.probed(row):
            choice = policy.budgets[row][0]
            result = await ctx.delegate(choice.strategy(), problem)
            return result.model_copy(update={"extra": {
                **result.extra, "choice": choice.label, "choice_spec": choice.spec,
                "predicted_bin": None, "policy_budget": row}})
        probe = await draw_probe(policy, problem, ctx)
        tokens = None
        if policy.uses("prompt_tokens") and not ctx.exhausted:
            tokens = await prompt_tokens(problem, ctx)
        values = candidate_features(probe, tokens)
        bin_ = policy.predict(values, len(problem.question))
        _, choice = policy.choose(bin_, self.budget)
        chosen: dict[str, Any] = {
            "probe_statistic": round(policy.score(values), 4), "features": values,
            "predicted_bin": bin_, "choice": choice.label, "choice_spec": choice.spec,
            "policy_budget": row}
        if ctx.exhausted:
            answer, votes = vote(probe)
            return ctx.result(problem, answer, probe, votes=votes, **chosen)
        picked: Strategy = choice.strategy()
        result = await ctx.delegate(picked, problem)
        return result.model_copy(update={"extra": {**result.extra, **chosen}})


async def draw_probe(policy: Policy, problem: Problem, ctx: Context) -> list[Candidate]:
    """The probe's samples, scored by the probe's verifier when the policy reads their
    confidence, and left on offer for the chosen strategy."""
    prober = policy.prober()
    outer = ctx.verifier
    if policy.uses("confidence"):
        ctx.verifier = make_verifier(policy.probe_verifier or policy.verifier or "confidence")
    try:
        probe = await prober.draw(problem, ctx, policy.probe_k)
        if policy.uses("confidence") and probe:
            probe = await ctx.score(problem, probe)
        prober.offer_drawn(problem, ctx, probe)
    finally:
        ctx.verifier = outer
    return probe


async def prompt_tokens(problem: Problem, ctx: Context) -> int | None:
    """The problem's own prompt in tokens as the engine counts it (cached ones included): a
    one-token greedy call, as a sweep's greedy decoding reads the prompt. None when the budget
    refuses the call."""
    gen = await ctx.generate(GenerationRequest(prompt=problem.prompt(), n=1, temperature=0.0,
                                               max_tokens=1, seed=0))
    return gen.prompt_tokens if gen.completions else None
