"""Difficulty features that mean something on real prompts, and the rule that keeps a policy
from doing worse than greedy decoding.

- the features a served ``adaptive`` computes on a problem are those the fit read from the
  sweep's records of it (scripted backend, and the real embedded model);
- what the fit learns (features, cuts, per-bin choices) depends on training problems only;
- at budgets at or above greedy's cost a bin runs something else only where the training
  problems show it beats greedy, and the report says what a budget below greedy's costs;
- policy files written before the features still load and choose as they did.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from testtime.backends.embedded import EmbeddedBackend
from testtime.backends.scripted import ScriptedBackend
from testtime.eval.allocation import GREEDY_SLACK, Scored, plan_rows
from testtime.eval.crossfit import CrossFit, CrossFitter, Scores, complete_problems, report_lines
from testtime.eval.curves import problem_key
from testtime.eval.policy import FitRule, instances
from testtime.eval.runner import solve
from testtime.eval.store import ResultStore
from testtime.eval.sweep import SweepConfig, expand, run_unit
from testtime.policy import Choice, Policy, draw_spec, load_policy, policy_spec
from testtime.strategies import make_strategy
from testtime.types import GenerationRequest, Problem, Prompt

NOTHINK = "no-thinking:n=8,max_tokens=4,verifier=confidence"
ARITH_STORE = Path(__file__).resolve().parents[2] / "examples" / "policy-sweep.db"


def _u(*parts: object) -> float:
    return int(hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:8], 16) / 2**32


def scripted() -> ScriptedBackend:
    """Answers that depend on the prompt, sample index and seed; confidence on the text."""
    def respond(prompt: Prompt, i: int, req: GenerationRequest) -> str:
        pick = int(_u(prompt.messages[-1].content, req.seed, i) * 3)
        return f" {pick + 4}." if prompt.prefix else f"Work. The answer is {pick + 4}."
    return ScriptedBackend(responder=respond, logprob=lambda text: -0.1 - _u("c", text))


def all_features_policy(path: Path) -> Path:
    """Reads every feature; two bins that run different configurations."""
    Policy(probe_k=2, features=["agreement", "confidence", "prompt_tokens"],
           coef=[1.0, 1.0, -0.01], intercept=0.0, means=[0.5, 0.5, 40.0], edges=[1.2],
           probe="no-thinking:max_tokens=4", probe_verifier="confidence",
           budgets={"100": [Choice(spec="no-thinking:n=2,max_tokens=4"),
                            Choice(spec="single:max_tokens=8")]}).save(path)
    return path


async def _sweep(backend: Any, strategies: list[str], tmp: Path, limit: int
                 ) -> list[dict[str, Any]]:
    cfg = SweepConfig(tasks=[{"spec": "arith:level=1+2+3", "limit": limit}],
                      strategies=strategies, backends=["scripted"], store=str(tmp / "s.db"))
    return [await run_unit(unit, backend) for unit in expand(cfg)]


def _compare(recs: list[dict[str, Any]], policy_file: Path) -> list[dict[str, float]]:
    """Per problem, the features the fit reads from the sweep's records and those the
    served policy computed (from its record's extra), asserted equal."""
    adaptive = [r for r in recs if r["strategy"].startswith("adaptive")]
    fitted = {i.problem: i.features
              for i in instances([r for r in recs if r not in adaptive],
                                 [problem_key(r) for r in adaptive], 2, draw_spec(NOTHINK))}
    served = {problem_key(r): r["extra"]["features"] for r in adaptive}
    assert served and served == fitted
    policy = load_policy(str(policy_file))
    for r in adaptive:
        assert r["extra"]["predicted_bin"] == policy.predict(fitted[problem_key(r)])
    return list(served.values())


async def test_features_at_serve_time_equal_those_the_fit_read(tmp_path: Path) -> None:
    path = all_features_policy(tmp_path / "p.json")
    recs = await _sweep(scripted(), [NOTHINK, "single:max_tokens=8",
                                     policy_spec(str(path), 100)], tmp_path, 8)
    features = _compare(recs, path)
    assert all(set(f) == {"agreement", "confidence", "prompt_tokens"} for f in features)
    assert len({f["confidence"] for f in features}) > 1 and all(
        f["prompt_tokens"] > 10 for f in features)


async def test_a_row_that_runs_one_configuration_everywhere_skips_the_probe(tmp_path: Path
                                                                           ) -> None:
    path = tmp_path / "p.json"
    Policy(probe_k=2, features=["agreement", "prompt_tokens"], coef=[1.0, -0.1],
           means=[1.0, 30.0], edges=[0.5], budgets={
               "50": [Choice(spec="no-thinking:n=2,max_tokens=4"), Choice(spec="single")],
               "500": [Choice(spec="single:max_tokens=8")] * 2}).save(path)
    backend = ScriptedBackend(responder=lambda p, i, r: "The answer is 5.")
    problem = Problem(id="e", question="What is 2 + 3?", reference="5")
    res = await solve(problem, make_strategy(policy_spec(str(path), 500)), backend)
    assert res.answer == "5" and res.extra["predicted_bin"] is None
    assert [(r.n, r.max_tokens) for r in backend.requests] == [(1, 8)], "no probe, no count"
    backend.requests.clear()
    res = await solve(problem, make_strategy(policy_spec(str(path), 50)), backend)
    assert [(r.n, r.max_tokens, r.temperature) for r in backend.requests][1] == (1, 1, 0.0), \
        "probe, then the one-token call that counts the prompt's tokens"
    greedy = await solve(problem, make_strategy("single"), backend)
    assert res.extra["features"]["prompt_tokens"] == greedy.usage.prompt_tokens > 0


def _flipped(rec: dict[str, Any]) -> dict[str, Any]:
    """The record with every outcome, answer and score turned around."""
    cands = [{**c, "correct": not c.get("correct"), "answer": f"{c.get('answer')}9",
              "score": None if c.get("score") is None else 1 - c["score"]}
             for c in rec.get("candidates") or []]
    return {**rec, "correct": not rec.get("correct"), "candidates": cands}


def test_held_out_problems_cannot_move_what_the_fit_learns(synthetic_store: Path) -> None:
    with ResultStore(synthetic_store, create=False) as s:
        recs = s.records()
    problems = complete_problems(recs)
    train, held = problems[:28], set(problems[28:])
    flipped = [_flipped(r) if problem_key(r) in held else r for r in recs]
    budgets = [60, 250, 1000]
    before, after = FitRule().fit(recs, train, budgets), FitRule().fit(flipped, train, budgets)
    assert before.feature_sets and before.model_dump() == after.model_dump()
    on_all = FitRule().fit(flipped, problems, budgets)
    assert on_all.model_dump() != FitRule().fit(recs, problems, budgets).model_dump(), \
        "the same change moves the fit once those problems are trained on"


def _scored(right: dict[str, list[int]], cost: list[float], probe: float = 5.0) -> Scored:
    acc = np.array([right[k] for k in ("greedy", "better", "cheap")], dtype=float).T
    plain = np.tile(np.array(cost), (acc.shape[0], 1))
    return Scored(acc, plain + probe, acc, plain)


@pytest.mark.parametrize(("better_hard", "row"), [(20, [0, 1]), (12, [0, 0])])
def test_greedy_holds_a_bin_unless_its_training_problems_show_something_beats_it(
        better_hard: int, row: list[int]) -> None:
    """Columns: greedy (100 tokens), ``better`` (300), ``cheap`` (10); the probe costs 5.
    Bin 1: greedy and ``better`` right on 20 of 20, ``cheap`` on 19. Bin 2: greedy right on
    10 of 20, ``better`` on ``better_hard`` (the same 10 and more). At or above greedy's cost
    ``better`` runs in bin 2 only where it beats greedy beyond doubt; below it, the mix that
    scores best."""
    def ones(k: int) -> list[int]:
        return [1] * k + [0] * (20 - k)

    right = {"greedy": ones(20) + ones(10), "better": ones(20) + ones(better_hard),
             "cheap": ones(19) + ones(5)}
    bins_of = np.array([1] * 20 + [2] * 20)
    scored = _scored(right, [100.0, 300.0, 10.0])
    rows = plan_rows(scored, bins_of, 2, [60, 100 * (1 - GREEDY_SLACK), 250], 4.0, greedy=0)
    assert rows[0] == [2, 0], "below greedy's cost: cheap answers on the easy bin"
    assert rows[1] == [0, 0], "greedy's cost within the slack buys greedy, without a probe"
    assert rows[2] == row
    assert plan_rows(scored, bins_of, 2, [250], 4.0, greedy=None) == [[0, 1]], \
        "without a greedy run to hold to, the knapsack takes the better estimate"


def _crossfit(policy_right: int, budgets: list[float]) -> CrossFit:
    def scores(right: int, cost: float) -> Scores:
        s = Scores()
        for i in range(100):
            s.add(f"p{i}", float(i < right), cost, "x")
        return s
    greedy, sc = scores(70, 100.0), scores(72, 1600.0)
    policy = {b: scores(policy_right if b < 100 else 70, min(b, 100.0)) for b in budgets}
    return CrossFit(problems=[f"p{i}" for i in range(100)], folds=5, unit="tokens",
                    budgets=budgets, policy=policy, fixed=policy, sc=sc, greedy=greedy,
                    chosen=policy[budgets[-1]], chosen_budgets=[None] * 5, sc_n=16,
                    features=["agreement"] * 5)


def test_the_report_says_what_a_budget_below_greedy_costs_and_holds_the_rest_to_greedy(
        ) -> None:
    lines = report_lines(_crossfit(60, [50.0, 100.0, 400.0]))
    text = "\n".join(lines)
    assert "budget 50: policy - greedy -0.100 [" in text
    assert "below greedy's cost; saving 50% of greedy's tokens costs 0.100 accuracy [" in text
    assert "budget 100: policy - greedy +0.000 [+0.000, +0.000], non-inferior" in text
    assert "budget 400: policy - greedy +0.000 [+0.000, +0.000], non-inferior" in text
    assert "at every budget at or above greedy's cost the policy is non-inferior" in text
    assert "difficulty features per fold, chosen on its training folds: agreement," in text


def test_policy_files_from_before_the_features_load_and_choose_as_before(tmp_path: Path
                                                                          ) -> None:
    before = Path(__file__).resolve().parents[1] / "data" / "arith-policy.json"
    shipped = load_policy(str(before))
    assert shipped.features == ["agreement"] and shipped.coef == [1.0] and shipped.bins == 4
    assert shipped.feature == "prompt_chars" and shipped.feature_cut == 20.0
    for agree, chars, bin_ in ((1.0, 10, 1), (1.0, 30, 2), (0.5, 10, 3), (0.5, 30, 4)):
        assert shipped.predict({"agreement": agree}, chars) == bin_
    old = json.loads(before.read_text())
    assert old["statistic"] == "agreement" and "features" not in old
    old["statistic"] = "score"
    (tmp_path / "old.json").write_text(json.dumps(old))
    scored = load_policy(str(tmp_path / "old.json"))
    assert scored.features == ["confidence"] and scored.predict({"confidence": 0.9}, 5) == 1
    scored.save(tmp_path / "new.json")
    assert load_policy(str(tmp_path / "new.json")) == scored


@pytest.mark.slow
def test_on_the_arith_sweep_the_policy_is_never_worse_than_greedy_at_its_cost() -> None:
    """examples/policy-sweep.db: 60 arithmetic problems of the 0.5B model, cross-fitted."""
    with ResultStore(ARITH_STORE, create=False) as s:
        recs = s.records()
    rule = FitRule()
    result = CrossFitter(recs, lambda train, bs: rule.fit(recs, train, bs),
                         prep=rule.prepared(recs)).run(complete_problems(recs), inner=0)
    floor = result.greedy.mean_cost(result.problems)
    assert any(b >= floor for b in result.budgets) and any(b < floor for b in result.budgets)
    assert all(ok for _, _, ok in result.greedy_ok())
    assert len(result.features) == 5 and all(result.features)
    assert len(result.versus_greedy()) == len(result.budgets)


@pytest.mark.model
@pytest.mark.slow
async def test_on_the_real_model_served_features_equal_the_sweeps(tmp_path: Path) -> None:
    """SmolLM2-135M without a prompt cache (so a seed reproduces its samples): the sweep's
    no-thinking pool and greedy run give the fit its features; the served policy's probe and
    prompt count give the same."""
    backend = EmbeddedBackend(model="smollm2-135m", slots=8, ctx=1024, cache=False)
    backend.start()
    try:
        path = all_features_policy(tmp_path / "p.json")
        recs = await _sweep(backend, [NOTHINK, "single:max_tokens=8",
                                      policy_spec(str(path), 100)], tmp_path, 3)
    finally:
        await backend.close()
        backend._pool.shutdown(wait=True)
    features = _compare(recs, path)
    assert all(f["prompt_tokens"] > 20 and 0 < f["confidence"] <= 1 for f in features)


def test_the_shipped_policy_is_fitted_on_gsm8k_and_never_cuts_a_solution_short() -> None:
    """The default model's policy comes from the GSM8K sweep (examples/gsm8k-sweep.yaml), reads
    features that exist on real prompts, and gives every thinking configuration room for a
    whole solution (the arith-fitted one ran greedy decoding cut at 192 tokens)."""
    from testtime.strategies import make_strategy

    shipped = load_policy("qwen2.5-coder-0.5b")
    assert shipped.train and all(p.startswith("gsm8k-train/") for p in shipped.train)
    assert shipped.greedy == "single:max_tokens=512" and shipped.feature is None
    assert set(shipped.features) <= {"agreement", "confidence", "prompt_tokens"}
    for choices in shipped.budgets.values():
        for choice in choices:
            if not choice.spec.startswith("no-thinking"):
                assert make_strategy(choice.spec).max_tokens >= 512, choice.spec
