"""The fit across strategy families on synthetic sweep records whose right answer is known.

Three kinds of problems, told apart by the agreement of the first 3 samples:
- easy (probe 5,5,5): every sample is right, so majority@4 is right and cheapest;
- medium (probe 5,3,5): majority@4 is right (so is early stopping, which stops at 4 samples
  and loses the tie to the plain configuration), beam search is wrong;
- hard (probe 7,3,1): no sample is right, beam search is right for 300 tokens.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from testtime.eval.difficulty import split
from testtime.eval.policy import fit_policy, instances, outcome, simulate, unit_cost
from testtime.policy import draw_spec
from testtime.strategies import make_strategy

POOL = "weighted-vote:n=8,verifier=confidence"
BEAM = "beam:n=4,width=2,verifier=confidence"
PER_SAMPLE = 50
SAMPLES = {"easy": ["5"] * 8, "medium": ["5", "3", "5", "5", "5", "5", "5", "5"],
           "hard": ["7", "3", "1", "7", "3", "1", "2", "4"]}
BEAM_RUN = {"easy": (True, 1000), "medium": (False, 300), "hard": (True, 300)}


def _record(pid: str, strategy: str, correct: bool, candidates: list[dict[str, Any]],
            generated: int) -> dict[str, Any]:
    return {"task": "synthetic", "problem_id": pid, "strategy": strategy, "seed": 0,
            "backend": "scripted", "budget": None, "verifier": None, "correct": correct,
            "answer": None, "budget_exhausted": False, "candidates": candidates,
            "usage": {"generated_tokens": generated, "verifier_tokens": 0, "prompt_tokens": 20,
                      "calls": 1, "flops": generated * 1e9, "seconds": generated / 10}}


def synthetic_records(per_kind: int = 20) -> list[dict[str, Any]]:
    recs = []
    for kind, answers in SAMPLES.items():
        for i in range(per_kind):
            pid = f"{kind}-{i}"
            cands = [{"answer": a, "correct": a == "5", "generated_tokens": PER_SAMPLE,
                      "score": 0.9 if a == "5" else 0.5} for a in answers]
            recs.append(_record(pid, POOL, cands[0]["correct"], cands,
                                PER_SAMPLE * len(cands)))
            ok, tokens = BEAM_RUN[kind]
            recs.append(_record(pid, BEAM, ok, [{"answer": "5" if ok else "8", "correct": ok,
                                                 "generated_tokens": tokens, "score": 0.9}],
                                tokens))
    return recs


def kind_of(policy_bin: int, policy: Any, recs: list[dict[str, Any]]) -> set[str]:
    insts = instances(recs, policy.train, policy.probe_k)
    return {i.problem.split("/")[1].split("-")[0] for i in insts
            if policy.predict(i.features) == policy_bin}


def test_each_bin_gets_the_family_that_wins_it() -> None:
    recs = synthetic_records()
    policy = fit_policy(recs, probe_k=3, bins=3, budgets=[300])
    assert policy.bins == 3
    kinds = {b: kind_of(b, policy, recs) for b in range(1, 4)}
    assert kinds == {1: {"easy"}, 2: {"medium"}, 3: {"hard"}}
    row = [c.label for c in policy.budgets["300"]]
    assert row[1] == "majority@4", "majority@4 suffices on the medium bin"
    assert row[2] == BEAM and policy.budgets["300"][2].family == "beam", \
        "beam search dominates the hard bin"
    easy = policy.budgets["300"][0]
    assert easy.family == "early-stop", "early stopping answers easy problems from the probe"
    for inst in instances(recs, policy.train, policy.probe_k):
        if inst.problem.split("/")[1].startswith("easy"):
            correct, usage = outcome(inst, easy, policy.probe_k)
            assert (correct, usage["generated_tokens"]) == (1.0, 3 * PER_SAMPLE)


def test_the_cost_constraint_holds_on_average_and_binds() -> None:
    recs = synthetic_records()
    policy = fit_policy(recs, probe_k=3, bins=3, budgets=[200, 250, 300, 1000])
    insts = instances(recs, policy.train, policy.probe_k)
    for budget, row in policy.budgets.items():
        costs = [unit_cost(outcome(i, row[policy.predict(i.features) - 1],
                                   policy.probe_k)[1], "tokens") for i in insts]
        assert np.mean(costs) <= float(budget) + 1e-9, budget
    tight = [c.label for c in policy.budgets["250"]]
    assert BEAM not in tight, "beam on the hard third does not fit 250 tokens on average"
    held = simulate(policy, recs, policy.heldout, "300")
    assert np.mean([p.correct for p in held]) == 1.0
    assert np.mean([p.generated_tokens for p in held]) == pytest.approx(
        np.mean([{"easy": 150, "medium": 200, "hard": 450}[p.problem.split("/")[1]
                                                             .split("-")[0]] for p in held]))


def test_budgets_in_flops_or_seconds_and_verifier_tokens_count() -> None:
    recs = synthetic_records()
    for rec in recs:
        if rec["strategy"] == BEAM:
            rec["usage"]["verifier_tokens"] = 5000
    policy = fit_policy(recs, probe_k=3, bins=3, budgets=[1000])
    assert all(c.family != "beam" for c in policy.budgets["1000"]), \
        "5000 verifier tokens a run price beam search out"
    by_seconds = fit_policy(synthetic_records(), probe_k=3, bins=3, unit="seconds",
                            budgets=[30])
    assert by_seconds.unit == "seconds" and by_seconds.budgets["30"][2].family == "beam"


def test_prompt_tokens_split_what_the_probe_cannot_tell_apart() -> None:
    """Every probe agrees, but long questions (80 prompt tokens in greedy decoding's record)
    are confidently wrong and need beam search; greedy decoding is right on short ones only,
    and beam search on every question does not fit the budget. The fit picks a feature set
    with prompt_tokens on inner folds; agreement alone is one bin."""
    recs = []
    for i in range(40):
        long = i % 2 == 1
        pid = f"{'long' if long else 'short'}-{i}"
        answer = "6" if long else "5"
        cands = [{"answer": answer, "correct": not long, "generated_tokens": PER_SAMPLE,
                  "score": 0.9} for _ in range(8)]
        greedy = _record(pid, "single", not long, [{"answer": answer, "correct": not long,
                                                    "generated_tokens": 40}], 40)
        greedy["usage"]["prompt_tokens"] = 80 if long else 20
        recs += [_record(pid, POOL, not long, cands, PER_SAMPLE * 8), greedy,
                 _record(pid, BEAM, True, [{"answer": "5", "correct": True,
                                            "generated_tokens": 300, "score": 0.9}], 300)]
    plain = fit_policy(recs, probe_k=2, bins=3, budgets=[280], features=["agreement"])
    assert plain.bins == 1 and [c.label for c in plain.budgets["280"]] == ["single"]
    fitted = fit_policy(recs, probe_k=2, bins=3, budgets=[280])
    assert "prompt_tokens" in fitted.features and fitted.bins == 2
    assert fitted.feature_sets["prompt_tokens"] > fitted.feature_sets["agreement"]
    assert [c.label for c in fitted.budgets["280"]] == ["single", BEAM], \
        "greedy where nothing beats it, beam search on long questions"
    held = simulate(fitted, recs, fitted.heldout, "280")
    assert np.mean([p.correct for p in held]) == 1.0
    assert all(p.generated_tokens == 2 * PER_SAMPLE + 1 + (300 if "long" in p.problem else 40)
               for p in held), "probe, the prompt-counting call, then the choice"


@pytest.mark.parametrize("spec", ["deepconf:mode=online,n=8,warmup=4,batch=2",
                                  "certainty-probe:n=4,probe_every=32,k=2"])
def test_efficiency_strategies_have_a_place_in_the_choice_set(spec: str) -> None:
    recs = [dict(r, strategy=spec) if r["strategy"] == BEAM else r
            for r in synthetic_records()]
    policy = fit_policy(recs, probe_k=3, bins=3, budgets=[300])
    hard = policy.budgets["300"][2]
    assert hard.label == spec and hard.family == spec.split(":")[0]
    assert make_strategy(hard.label).registered_name == spec.split(":")[0]  # type: ignore[attr-defined]


def test_a_bin_of_few_problems_cannot_crown_a_configuration_on_luck() -> None:
    """Two training problems fall in the odd bin, where beam search happened to win; held out,
    the odd problems are like every other and majority voting is right. Shrinking the bin's
    accuracies toward all problems' keeps the configuration that wins everywhere."""
    ids = [f"common-{i}" for i in range(36)] + [f"odd-{i}" for i in range(1, 6)]
    train, _ = split(sorted(f"synthetic/{p}" for p in ids), 0.5, 0)
    recs = []
    for pid in ids:
        odd, trained = pid.startswith("odd"), f"synthetic/{pid}" in train
        answers = (["5"] * 8 if not odd else ["3", "5", "3"] + ["3"] * 5 if trained
                   else ["5", "5", "3"] + ["5"] * 5)
        cands = [{"answer": a, "correct": a == "5", "generated_tokens": PER_SAMPLE,
                  "score": 0.7} for a in answers]
        lucky = odd and trained
        recs += [_record(pid, POOL, True, cands, PER_SAMPLE * 8),
                 _record(pid, BEAM, lucky, [{"answer": "5" if lucky else "8", "correct": lucky,
                                             "generated_tokens": 300, "score": 0.9}], 300)]
    odd_train = [p for p in train if "odd" in p]
    assert len(odd_train) == 2, "the split must leave two odd problems to train on"
    odd_held = [p for p in ids if p.startswith("odd") and f"synthetic/{p}" not in train]
    for prior, wins in ((0.0, False), (4.0, True)):
        policy = fit_policy(recs, probe_k=3, bins=2, budgets=[1000], prior=prior,
                            features=["agreement"])
        assert policy.bins == 2
        assert (policy.budgets["1000"][1].family != "beam") is wins, prior
        held = simulate(policy, recs, [f"synthetic/{p}" for p in odd_held], "1000")
        assert np.mean([p.correct for p in held]) == (1.0 if wins else 0.0), prior


def test_a_no_thinking_probe_answers_what_it_agrees_on_and_thinks_about_the_rest() -> None:
    """Every problem has a chain-of-thought pool (50 tokens a sample, always right) and a pool
    of no-thinking answers (3 tokens each): easy problems' answers agree and are right, hard
    ones' scatter. The probe is the cheaper pool; agreeing answers are the answer (6 tokens),
    and a hard problem pays the probe plus a chain of thought, which cannot reuse it."""
    nothink = "no-thinking:n=8,max_tokens=16"
    recs = []
    for i in range(40):
        hard = i % 2 == 1
        pid = f"{'hard' if hard else 'easy'}-{i}"
        quick = ["7", "3", "1", "9", "5", "2", "8", "6"] if hard else ["5"] * 8
        recs += [
            _record(pid, POOL, True, [{"answer": "5", "correct": True, "score": 0.9,
                                       "generated_tokens": PER_SAMPLE}] * 8, PER_SAMPLE * 8),
            _record(pid, nothink, not hard, [{"answer": a, "correct": a == "5",
                                              "generated_tokens": 3} for a in quick], 24)]
    policy = fit_policy(recs, probe_k=2, bins=2, budgets=[35])
    assert policy.probe == draw_spec(nothink) and policy.bins == 2
    easy, hard = policy.budgets["35"]
    assert easy.label == "no-thinking@2" and hard.family in ("majority", "weighted", "best-of")
    held = simulate(policy, recs, policy.heldout, "35")
    assert np.mean([p.correct for p in held]) == 1.0
    for p in held:
        assert p.generated_tokens == (6 if "easy" in p.problem else 6 + hard.k * PER_SAMPLE)
    cot = fit_policy(recs, probe_k=2, bins=2, budgets=[35], probe=POOL)
    assert cot.probe == draw_spec(POOL) and cot.bins == 1, \
        "chain-of-thought probes all agree, so they tell nothing apart"


def test_two_sampling_pools_keep_apart_in_the_fitted_table() -> None:
    """A sweep that samples at two temperatures has two majority@4 configurations; the fit
    scores and reports each from its own pool rather than letting one label hide the other."""
    cool = "self-consistency:n=8,temperature=0.3"
    recs = synthetic_records()
    for rec in list(recs):
        if rec["strategy"] == POOL:
            recs.append({**rec, "strategy": cool, "candidates": [
                {**c, "answer": "5", "correct": True} for c in rec["candidates"]]})
    policy = fit_policy(recs, probe_k=3, bins=3, budgets=[300], probe=POOL)
    row = policy.table["2"]
    assert "majority@4" not in row
    assert row["self-consistency:n=4"][0] < row["self-consistency:n=4,temperature=0.3"][0] == 1.0
    assert all(policy.measured(b, c) is not None
               for b, c in enumerate(policy.budgets["300"], start=1))


def test_each_vote_family_is_scored_as_the_strategy_that_samples_plain_chains_of_thought() -> None:
    """Program samples are not chains of thought: no other strategy may claim their pools.
    Tool-integrated traces pool as a family of their own, drawn by their own strategy."""
    from testtime.policy import pools

    assert {name: pool.family for name, pool in pools().items()} == {
        "self-consistency": "majority", "weighted-vote": "weighted", "best-of-n": "best-of",
        "no-thinking": "no-thinking", "tool-integrated": "tool-integrated"}
    assert {name for name, pool in pools().items() if pool.own_draw} == {
        "no-thinking", "tool-integrated"}
    assert all(pool.drawn_by == name for name, pool in pools().items() if pool.own_draw)


def test_a_pool_of_tool_integrated_traces_is_voted_only_as_itself() -> None:
    """Every problem also has a pool of tool-integrated traces (80 tokens each, always right).
    The fit offers them as tool-integrated@k, drawn as that pool was (max_calls kept), never
    as a chain-of-thought vote or an early stop; on the hard bin they beat beam search."""
    from testtime.eval.policy import choices, instances, pooled_records

    tools = "tool-integrated:n=8,max_calls=2"
    recs = synthetic_records()
    for rec in [r for r in recs if r["strategy"] == POOL]:
        recs.append(_record(rec["problem_id"], tools, True,
                            [{"answer": "5", "correct": True, "generated_tokens": 80}] * 8,
                            640))
    insts = instances(recs, sorted(pooled_records(recs)), 3, draw_spec(POOL))
    drawn = draw_spec(tools)
    assert drawn is not None and "max_calls=2" in drawn
    from_tools = [c for c in choices(insts, 3) if c.draw == drawn]
    assert from_tools and {c.family for c in from_tools} == {"tool-integrated"}
    assert all(c.name == "tool-integrated" for c in from_tools)
    policy = fit_policy(recs, probe_k=3, bins=3, budgets=[300], probe=POOL)
    hard = policy.budgets["300"][2]
    assert hard.family == "tool-integrated" and hard.label == "tool-integrated@1"
    assert make_strategy(hard.spec).max_calls == 2  # type: ignore[attr-defined]
