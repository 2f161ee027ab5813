"""Cross-fitting: folds, each problem scored once while held out, paired intervals, and the
non-inferiority headline."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from testtime.eval.crossfit import (
    MARGIN,
    CrossFit,
    CrossFitter,
    Scores,
    assign_folds,
    complete_problems,
    paired,
)
from testtime.eval.policy import fit_policy
from testtime.eval.store import ResultStore
from testtime.policy import Policy


def records(store: Path) -> list[dict[str, object]]:
    with ResultStore(store, create=False) as s:
        return s.records()


def test_folds_partition_the_problems_whatever_their_order() -> None:
    problems = [f"p{i}" for i in range(23)]
    folds = assign_folds(problems, 5)
    assert sorted(p for f in folds for p in f) == sorted(problems)
    assert {len(f) for f in folds} <= {4, 5}
    assert assign_folds(list(reversed(problems)), 5) == folds
    assert assign_folds(problems, 5, seed=1) != folds


def test_paired_bootstrap_keeps_pairs_whole() -> None:
    same = paired([1, 0, 1, 0], [1, 0, 1, 0])
    assert (same.diff, same.lo, same.hi) == (0.0, 0.0, 0.0)
    shifted = paired([1.0] * 30, [0.0] * 30)
    assert shifted.diff == shifted.lo == shifted.hi == 1.0
    noisy = paired([1, 0] * 20, [0, 1] * 20)
    assert noisy.lo < 0 < noisy.hi and noisy.diff == 0.0


def test_every_problem_is_scored_once_by_a_fit_that_never_saw_it(synthetic_store: Path
                                                                  ) -> None:
    recs = records(synthetic_store)
    problems = complete_problems(recs)
    assert len(problems) == 40
    seen: list[list[str]] = []

    def fit(train: Sequence[str], budgets: Sequence[float]) -> Policy:
        seen.append(sorted(train))
        return fit_policy(recs, train=train, budgets=budgets)

    result = CrossFitter(recs, fit).run(problems, folds=4, inner=0)
    held = assign_folds(problems, 4)
    assert seen == [sorted(set(problems) - set(h)) for h in held]
    assert result.problems == sorted(problems)
    for scores in [result.sc, result.greedy, *result.policy.values(), *result.fixed.values()]:
        assert set(scores.correct) == set(problems)
    assert result.sc.picked[problems[0]] == "majority@16"
    assert result.greedy.picked[problems[0]] == "single"
    rows = result.rows()
    assert [r["budget"] for r in rows] == result.budgets == sorted(result.budgets)
    assert rows[-1]["cost"] > rows[0]["cost"]


def test_the_headline_budget_is_chosen_on_training_folds(synthetic_store: Path) -> None:
    recs = records(synthetic_store)
    problems = complete_problems(recs)
    calls: list[int] = []

    def fit(train: Sequence[str], budgets: Sequence[float]) -> Policy:
        calls.append(len(train))
        return fit_policy(recs, train=train, budgets=budgets)

    result = CrossFitter(recs, fit).run(problems, folds=4, inner=3)
    assert len(result.chosen_budgets) == 4
    assert calls.count(30) == 4 and len(calls) == 4 + 4 * 3, "one inner cross-fit per fold"
    assert set(result.chosen.correct) == set(problems)


def _scores(correct: Sequence[float], cost: float) -> Scores:
    s = Scores()
    for i, c in enumerate(correct):
        s.add(f"p{i}", c, cost)
    return s


@pytest.mark.parametrize(("policy_right", "expect_share"), [(70, 0.25), (60, 1.0)])
def test_share_is_reported_only_where_the_policy_is_non_inferior(policy_right: int,
                                                                 expect_share: float) -> None:
    sc = _scores([1.0] * 70 + [0.0] * 30, 400.0)
    pol = _scores([1.0] * policy_right + [0.0] * (100 - policy_right), 100.0)
    result = CrossFit(problems=[f"p{i}" for i in range(100)], folds=5, unit="tokens",
                      budgets=[100.0], policy={100.0: pol}, fixed={100.0: pol}, sc=sc,
                      greedy=sc, chosen=pol, chosen_budgets=[100.0] * 5, sc_n=16)
    share, diff = result.share()
    assert share == expect_share
    assert diff.non_inferior == (diff.lo >= -MARGIN) == (expect_share < 1)
