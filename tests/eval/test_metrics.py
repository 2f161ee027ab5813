"""Sample once, score many; bootstrap intervals; difficulty bins."""

from __future__ import annotations

import itertools
from math import comb

import numpy as np
import pytest

from testtime.eval.curves import Pool, derived_points, expected_at_k, subset_mask
from testtime.eval.difficulty import fit_edges, quantile_bins
from testtime.eval.metrics import pass_at_k
from testtime.eval.stats import bootstrap_ci, pareto, summarise_points
from testtime.strategies.voting import vote
from testtime.types import Candidate, Completion


def cands(answers: list[str | None], ref: str = "7", scores: list[float] | None = None
          ) -> list[dict[str, object]]:
    return [{"answer": a, "correct": a == ref, "generated_tokens": 10,
             "score": scores[i] if scores else None} for i, a in enumerate(answers)]


def as_candidates(rows: list[dict[str, object]]) -> list[Candidate]:
    return [Candidate(text="", answer=r["answer"], completion=Completion(text=""))  # type: ignore[arg-type]
            for r in rows]


def brute(rows: list[dict[str, object]], k: int, family: str) -> float:
    outs = []
    for sub in itertools.combinations(range(len(rows)), k):
        chosen = [rows[i] for i in sub]
        if family == "majority":
            answer, _ = vote(as_candidates(chosen))
            outs.append(answer == "7")
        else:
            outs.append(any(r["correct"] for r in chosen))
    return float(np.mean(outs))


ROWS = cands(["7", "3", "3", None, "7", "5", "7", "3"])


@pytest.mark.parametrize("k", [1, 2, 3, 5, 8])
def test_majority_at_k_matches_enumerating_every_subset(k: int) -> None:
    assert expected_at_k(Pool(ROWS), "majority", k) == pytest.approx(brute(ROWS, k, "majority"))


@pytest.mark.parametrize("k", [1, 2, 4, 8])
def test_pass_at_k_is_chen_estimator_and_matches_subsets(k: int) -> None:
    assert expected_at_k(Pool(ROWS), "pass", k) == pytest.approx(pass_at_k(8, 3, k))
    assert pass_at_k(8, 3, k) == pytest.approx(brute(ROWS, k, "pass"))


def test_monte_carlo_estimate_is_close_when_subsets_are_many() -> None:
    rows = cands(["7", "3", "3", "7", "5", "7", "3", "7", "3", "5", "7", "3"])
    assert comb(12, 6) > 512
    exact = brute(rows, 6, "majority")
    assert expected_at_k(Pool(rows), "majority", 6, samples=512) == pytest.approx(exact, abs=0.06)


def test_best_of_picks_highest_score_and_weighted_uses_scores() -> None:
    rows = cands(["3", "3", "7"], scores=[0.2, 0.3, 0.9])
    pool = Pool(rows)
    assert expected_at_k(pool, "best-of", 3) == 1.0
    assert expected_at_k(pool, "weighted", 3) == 1.0  # 0.9 beats 0.5
    assert expected_at_k(pool, "majority", 3) == 0.0


def test_subset_mask_keeps_fixed_items() -> None:
    mask = subset_mask(6, 4, np.random.default_rng(0), 100, fixed=2)
    assert mask.shape == (comb(4, 2), 6) and mask[:, :2].all() and (mask.sum(1) == 4).all()


def test_derived_points_give_every_family_and_scale_cost() -> None:
    rec = {"problem_id": "p", "task": "t", "strategy": "weighted-vote:n=8", "correct": True,
           "candidates": cands(["7"] * 8, scores=[0.5] * 8),
           "usage": {"generated_tokens": 80, "prompt_tokens": 20, "flops": 100.0}}
    pts = derived_points([rec])
    assert {p.config for p in pts} >= {"majority@1", "weighted@8", "best-of@4", "pass@2"}
    half = next(p for p in pts if p.config == "majority@4")
    assert half.generated_tokens == 40 and half.prompt_tokens == 20
    assert 50 < half.flops < 100


def test_no_thinking_answers_are_a_pool_of_their_own() -> None:
    """Beside a chain-of-thought pool of the same problem, no-thinking answers give their own
    no-thinking@k curve and leave majority@k to the chain of thought."""
    thought = {"problem_id": "p", "task": "t", "strategy": "self-consistency:n=4",
               "correct": True, "candidates": cands(["7"] * 4),
               "usage": {"generated_tokens": 40}}
    quick = {"problem_id": "p", "task": "t", "strategy": "no-thinking:n=8", "correct": False,
             "candidates": [{**c, "generated_tokens": 2} for c in cands(
                 ["3", "3", "3", "7", "3", "3", "3", "3"])],
             "usage": {"generated_tokens": 16}}
    pts = {p.config: p for p in derived_points([thought, quick])}
    assert pts["majority@4"].correct == 1.0 and pts["majority@4"].generated_tokens == 40
    assert pts["no-thinking@8"].correct == 0.0 and pts["no-thinking@8"].family == "no-thinking"
    assert pts["no-thinking@2"].generated_tokens == 4
    assert "majority@8" not in pts and "pass@8" not in pts


def test_every_pool_a_strategy_declares_gets_its_own_curve() -> None:
    """Tool-integrated traces are a pool of their own kind (declared in their strategy's
    file): tool-integrated@k, never mixed into majority@k; a strategy whose samples another
    strategy draws (samples=SPEC) derives no curve."""
    thought = {"problem_id": "p", "task": "t", "strategy": "self-consistency:n=2",
               "correct": False, "candidates": cands(["3", "3"]),
               "usage": {"generated_tokens": 20}}
    tools = {"problem_id": "p", "task": "t", "strategy": "tool-integrated:n=4",
             "correct": True, "candidates": cands(["7", "7", "3", "7"]),
             "usage": {"generated_tokens": 80}}
    nested = {"problem_id": "p", "task": "t",
              "strategy": "self-consistency:n=8,samples=[tool-integrated]", "correct": True,
              "candidates": cands(["7"] * 8), "usage": {"generated_tokens": 160}}
    pts = {p.config: p for p in derived_points([thought, tools, nested])}
    assert pts["tool-integrated@4"].correct == 1.0
    assert pts["tool-integrated@4"].family == "tool-integrated"
    assert pts["tool-integrated@2"].generated_tokens == 20  # 2 of 4 traces of 10 tokens
    assert pts["majority@2"].correct == 0.0 and "majority@8" not in pts
    assert "tool-integrated@8" not in pts


def test_bootstrap_interval_covers_mean_and_narrows_with_more_data() -> None:
    rng = np.random.default_rng(1)
    small = rng.random(20) < 0.6
    large = rng.random(2000) < 0.6
    lo, hi = bootstrap_ci(small.astype(float))
    assert lo <= small.mean() <= hi
    lo2, hi2 = bootstrap_ci(large.astype(float))
    assert hi2 - lo2 < hi - lo
    assert bootstrap_ci([1.0, 1.0]) == (1.0, 1.0)


def test_summaries_and_pareto_front() -> None:
    rec = {"problem_id": "p", "task": "t", "strategy": "self-consistency:n=4", "correct": True,
           "candidates": cands(["7", "3", "7", "7"]), "usage": {"generated_tokens": 40}}
    stats = summarise_points(derived_points([rec]))
    front = pareto([s for s in stats if s.family == "majority"])
    # majority@2 is 0.5 (a 7-3 tie goes to the smaller answer), below majority@1's 0.75
    assert [s.k for s in front] == [1, 4]
    assert front[-1].accuracy == max(s.accuracy for s in stats if s.family == "majority")


def test_quantile_bins_and_discrete_edges() -> None:
    bins = quantile_bins({"a": 1.0, "b": 0.9, "c": 0.5, "d": 0.1, "e": 0.0, "f": 0.2}, 3)
    assert bins["a"] == 1 and bins["e"] == 3 and sorted(bins.values()) == [1, 1, 2, 2, 3, 3]
    assert fit_edges([1.0, 0.5, 0.5, 1.0, 0.0], 3) == [0.75, 0.25]
    assert fit_edges([1.0, 1.0, 0.5], 5) == [0.75]
