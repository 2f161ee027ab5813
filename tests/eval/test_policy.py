"""Policy fitting, the adaptive strategy, and the report and CLI on a synthetic sweep."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from testtime.backends.scripted import ScriptedBackend
from testtime.budget import Budget
from testtime.cli import app
from testtime.eval.policy import default_budgets, fit_policy, simulate
from testtime.eval.report import build_report
from testtime.eval.runner import solve
from testtime.eval.store import ResultStore
from testtime.policy import Choice, Policy, PolicyError, load_policy
from testtime.strategies import make_strategy
from testtime.types import Problem

runner = CliRunner()


def records(store: Path) -> list[dict[str, object]]:
    with ResultStore(store, create=False) as s:
        return s.records()


def test_fit_policy_holds_out_problems_and_spends_more_on_hard_bins(synthetic_store: Path
                                                                    ) -> None:
    recs = records(synthetic_store)
    policy = fit_policy(recs, probe_k=2, bins=3)
    assert set(policy.train).isdisjoint(policy.heldout) and policy.heldout
    assert policy.bins >= 2
    budgets = list(policy.budgets)
    assert budgets == sorted(budgets, key=float)

    def cost(b: int, label: str) -> float:
        return policy.table[str(b)][label][1]

    assert any(cost(policy.bins, row[-1].label) > cost(1, row[0].label)
               for row in policy.budgets.values()), "some budget spends more on the hard bin"
    biggest = budgets[-1]
    pts = simulate(policy, recs, policy.heldout, biggest)
    assert {p.problem for p in pts} == set(policy.heldout)
    assert all(p.generated_tokens > 0 for p in pts)


def test_default_budgets_hold_greedys_cost_once() -> None:
    near = default_budgets(4860, 298)
    assert 298 in near and 304 not in near
    assert near == sorted(near) and near[-1] == 4860 and len(near) == 10
    far = default_budgets(4860, 450)
    assert {450, 304, 608} <= set(far) and len(far) == 11
    assert default_budgets(4860, None) == sorted({float(round(4860 * f)) for f in
                                                  (1 / 64, 1 / 32, 1 / 16, 1 / 8, 3 / 16, 1 / 4,
                                                   3 / 8, 1 / 2, 3 / 4, 1)})


def test_report_writes_html_pngs_markdown_and_compares_adaptive(synthetic_store: Path,
                                                                tmp_path: Path) -> None:
    summary = build_report(records(synthetic_store), tmp_path / "rep")
    for name in ("report.html", "report.md", "per_problem.csv", "accuracy_tokens.png",
                 "accuracy_by_difficulty.png", "adaptive_heldout.png"):
        assert (tmp_path / "rep" / name).stat().st_size > 500, name
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| majority@16 |" in md and "held-out problems" in summary["headline"]
    assert "adaptive_heldout.png" in (tmp_path / "rep" / "report.html").read_text()


class _Tables(HTMLParser):
    """Rows of every <table> in a page, as lists of cell texts."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def test_report_html_has_one_row_per_configuration_and_budgets_in_numeric_order(
        synthetic_store: Path, tmp_path: Path) -> None:
    recs = records(synthetic_store)
    policy = fit_policy(recs, probe_k=2, bins=3, budgets=[1293, 323, 646])
    build_report(recs, tmp_path / "rep", policy=policy)
    page = _Tables()
    page.feed((tmp_path / "rep" / "report.html").read_text())
    configs = page.tables[0]
    adaptive = next(t for t in page.tables if t[0][0] == "adaptive budget")
    winners = next(t for t in page.tables if t[0][0] == "budget (tokens)")
    assert [row[0] for row in winners[1:]] == ["323", "646", "1293"]
    assert len(winners[0]) == policy.bins + 1
    labels = [row[0] for row in configs[1:]]
    assert configs[0][0] == "configuration" and "majority@16" in labels
    assert all(len(row) == len(configs[0]) for row in configs), "every row has the header's cells"
    assert not any(set(cell) <= set("-") for row in configs for cell in row), "no separator cells"
    assert [row[0] for row in adaptive[1:]] == ["323", "646", "1293"]
    assert list(policy.budgets) == ["323", "646", "1293"]
    md = (tmp_path / "rep" / "report.md").read_text()
    assert f"{policy.bins} bins cut at" in md


def test_report_says_when_the_probe_found_no_cut() -> None:
    from testtime.eval.report import describe_bins
    one = Policy(probe_k=2, edges=[], budgets={"10": [Choice(spec="self-consistency:n=2")]})
    text = describe_bins(one)
    assert text.startswith("one probe bin") and "no cut was fitted" in text
    three = one.model_copy(update={"edges": [0.875, 0.625]})
    text = describe_bins(three)
    assert text.startswith("3 bins cut at 0.875, 0.625: bin 1 (easiest) agreement of 2 samples "
                           "drawn as self-consistency:temperature=0.8,max_tokens=512 ≥ 0.875; "
                           "bin 2 0.625 to 0.875; bin 3 (hardest) < 0.625")
    answers = three.model_copy(update={"probe": "no-thinking:max_tokens=16"})
    assert "agreement of 2 samples drawn as no-thinking:max_tokens=16 ≥" in describe_bins(answers)
    split = one.model_copy(update={"edges": [0.75], "feature": "prompt_chars",
                                   "feature_cut": 20.0})
    assert describe_bins(split).endswith(
        "bin 2 (hardest) < 0.75; each split by question length at 20 characters into 4 bins "
        "(probe bin p gives bin 2p-1 when short, 2p when long)")


def test_cli_fit_policy_then_report_with_it(synthetic_store: Path, tmp_path: Path) -> None:
    policy = tmp_path / "policy.json"
    res = runner.invoke(app, ["fit-policy", str(synthetic_store), "--out", str(policy),
                              "--budgets", "100,400,800", "--folds", "4", "--inner", "2"])
    assert res.exit_code == 0, res.output
    fitted = json.loads(policy.read_text())
    assert set(fitted["budgets"]) == {"100", "400", "800"}
    assert len(fitted["train"]) == 40 and fitted["heldout"] == []
    assert "40 problems, 4 folds" in res.output
    assert f"features: {', '.join(fitted['features'])} (chosen by 3 inner folds: agreement " \
        in res.output
    assert "difficulty features per fold, chosen on its training folds:" in res.output
    assert "against greedy decoding (" in res.output
    assert res.output.strip().splitlines()[-1].startswith(
        "share of SC@16 tokens at which the policy is non-inferior: not measured (40 problems")
    res = runner.invoke(app, ["report", str(synthetic_store), "--out", str(tmp_path / "r"),
                              "--policy", str(policy)])
    assert res.exit_code == 0, res.output
    assert "Adaptive policy on held-out problems" in res.output
    assert all(f"\n| {b} | " in res.output for b in (100, 400, 800))
    out = tmp_path / "x.parquet"
    res = runner.invoke(app, ["export", str(synthetic_store), "--out", str(out)])
    assert res.exit_code == 0 and "80 rows" in res.output


@pytest.mark.parametrize("args, message", [
    (["report", "missing.db"], "does not exist"),
    (["fit-policy", "missing.db"], "does not exist"),
    (["fit-policy", "STORE", "--budgets", "a,b"], "--budgets"),
    (["export", "STORE", "--out", "x.txt"], ".csv or .parquet"),
    (["fit-policy", "STORE", "--probe", "beam:n=2"], "not a pooled sampling strategy"),
    (["fit-policy", "STORE", "--probe", "no-thinking:max_tokens=9"], "no problem has a pool"),
    (["fit-policy", "STORE", "--probe", "nonsense:n=2"], "nonsense"),
    (["fit-policy", "STORE", "--features", "agreement,length"], "--features must be auto"),
])
def test_cli_errors_are_one_line(synthetic_store: Path, args: list[str], message: str) -> None:
    res = runner.invoke(app, [str(synthetic_store) if a == "STORE" else a for a in args])
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output


def write_policy(path: Path) -> Path:
    def c(spec: str) -> Choice:
        return Choice(spec=f"{spec},max_tokens=4")

    policy = Policy(probe_k=2, edges=[0.75], temperature=0.8, max_tokens=4,
                    budgets={"50": [c("self-consistency:n=2"), c("self-consistency:n=4")],
                             "200": [c("self-consistency:n=2"), c("weighted-vote:n=8")]})
    policy.save(path)
    return path


def scripted(hard_words: list[str]) -> ScriptedBackend:
    """Easy problems always say 5; the hard one cycles through answers."""
    def respond(prompt, i, req):  # type: ignore[no-untyped-def]
        if "hard" in prompt.messages[-1].content:
            return f"The answer is {hard_words[i % len(hard_words)]}."
        return "The answer is 5."
    return ScriptedBackend(responder=respond)


async def test_adaptive_probes_then_spends_by_predicted_bin(tmp_path: Path) -> None:
    path = write_policy(tmp_path / "p.json")
    strategy = make_strategy(f"adaptive:policy={path},budget=200")
    easy = Problem(id="e", question="easy", reference="5")
    hard = Problem(id="h", question="hard", reference="4")
    res = await solve(easy, strategy, scripted(["4", "3"]), spec="adaptive")
    assert len(res.candidates) == 2 and res.extra["predicted_bin"] == 1 and res.answer == "5"
    res = await solve(hard, strategy, scripted(["4", "3", "4", "9"]), spec="adaptive")
    assert res.extra["predicted_bin"] == 2 and res.extra["choice"] == "weighted@8"
    assert len(res.candidates) == 8 and res.usage.generated_tokens == 8 * 4
    assert res.answer == "4"


async def test_adaptive_stays_within_one_budget_including_the_probe(tmp_path: Path) -> None:
    path = write_policy(tmp_path / "p.json")
    strategy = make_strategy(f"adaptive:policy={path},budget=200")
    hard = Problem(id="h", question="hard", reference="4")
    res = await solve(hard, strategy, scripted(["4", "3"]), budget=Budget(generated_tokens=20))
    assert res.usage.generated_tokens <= 20 and res.budget_exhausted
    assert len(res.candidates) == 5  # 2 probe + 3 more fit in 20 tokens of 4 words


def test_bad_policy_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="does not exist"):
        load_policy(str(tmp_path / "none.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(PolicyError, match="not a valid policy"):
        load_policy(str(bad))
    short = tmp_path / "short.json"
    short.write_text(json.dumps({"probe_k": 2, "edges": [0.5], "budgets": {
        "10": [{"family": "majority", "k": 2}]}}))
    with pytest.raises(PolicyError, match="one choice per bin"):
        load_policy(str(short))


async def test_any_chosen_strategy_reuses_the_probe_when_it_samples_the_same_prompt(
        tmp_path: Path) -> None:
    """early-stop's first batch starts with the probe's two samples; beam starts fresh."""
    def c(spec: str) -> Choice:
        return Choice(spec=spec)

    path = tmp_path / "p.json"
    Policy(probe_k=2, edges=[0.75], temperature=0.8, max_tokens=4,
           budgets={"100": [c("early-stop:max_n=8,batch=4,max_tokens=4"),
                            c("revision:rounds=1,max_tokens=4")]}).save(path)
    strategy = make_strategy(f"adaptive:policy={path},budget=100")
    backend = scripted(["4", "3"])
    res = await solve(Problem(id="e", question="easy", reference="5"), strategy, backend)
    assert res.extra["choice"].startswith("early-stop") and res.answer == "5"
    assert len(res.candidates) == 4 and res.usage.calls == 2, "2 probe + 2 drawn in one call"
    res = await solve(Problem(id="h", question="hard", reference="4"), strategy, backend)
    assert res.extra["choice"].startswith("revision") and res.extra["predicted_bin"] == 2
    assert res.usage.generated_tokens == 3 * 4, "probe 2 (one reused as first attempt) + 1"


async def test_the_probe_compares_last_numbers_of_free_text_replies(tmp_path: Path) -> None:
    """A chat reply marks no final answer; the probe still sees that both say 4."""
    path = write_policy(tmp_path / "p.json")
    strategy = make_strategy(f"adaptive:policy={path},budget=200")
    chat = Problem(id="c", question="what is 2 + 2", kind="text")
    backend = ScriptedBackend(responder=lambda p, i, r: "2 + 2 equals 4.")
    res = await solve(chat, strategy, backend)
    assert res.extra["predicted_bin"] == 1 and res.extra["probe_statistic"] == 1.0
    words = ScriptedBackend(responder=lambda p, i, r: ["It is four.", "Four, I think."][i % 2])
    res = await solve(chat, strategy, words)
    assert res.extra["predicted_bin"] == 2


async def test_a_no_thinking_probe_answers_easy_questions_and_thinks_on_hard_ones(
        tmp_path: Path) -> None:
    """Two no-thinking answers probe; when they agree, no-thinking@2 answers from them with
    no further call; when they differ, a chain of thought is sampled from the plain prompt,
    which cannot reuse the prefilled probe."""
    path = tmp_path / "p.json"
    Policy(probe_k=2, edges=[0.75], probe="no-thinking:max_tokens=4",
           budgets={"100": [Choice(spec="no-thinking:n=2,max_tokens=4"),
                            Choice(spec="self-consistency:n=3,max_tokens=8")]}).save(path)

    def respond(prompt, i, req):  # type: ignore[no-untyped-def]
        if prompt.prefix:  # the no-thinking draw
            return " 5." if "easy" in prompt.messages[-1].content else f" {i + 1}."
        return "Think it through. The answer is 4."

    strategy = make_strategy(f"adaptive:policy={path},budget=100")
    backend = ScriptedBackend(responder=respond)
    easy = await solve(Problem(id="e", question="easy", reference="5"), strategy, backend)
    assert easy.answer == "5" and easy.extra["choice"] == "no-thinking@2"
    assert [r.n for r in backend.requests] == [2] and easy.usage.generated_tokens == 2
    backend.requests.clear()
    hard = await solve(Problem(id="h", question="hard", reference="4"), strategy, backend)
    assert hard.answer == "4" and hard.extra["predicted_bin"] == 2
    assert [(r.n, r.prompt.prefix) for r in backend.requests] == [(2, "The answer is"), (3, "")]
    assert hard.usage.generated_tokens == 2 + 3 * 7


def test_a_probe_that_is_not_a_sampling_pool_is_refused() -> None:
    with pytest.raises(ValueError, match="not a pooled sampling strategy"):
        Policy(probe_k=2, edges=[], probe="beam:n=2",
               budgets={"1": [Choice(spec="self-consistency:n=2")]})


def test_specs_that_sample_alike_share_one_draw_spec() -> None:
    from testtime.policy import draw_spec

    pool = draw_spec("weighted-vote:n=16,max_tokens=192,verifier=confidence")
    assert pool == draw_spec("self-consistency:n=4,temperature=0.8,max_tokens=192")
    assert pool == draw_spec("best-of-n:n=2,max_tokens=192,verifier=judge")
    assert pool != draw_spec("self-consistency:n=4,temperature=0.3,max_tokens=192")
    assert pool != draw_spec("no-thinking:n=16,max_tokens=192")
    assert draw_spec("no-thinking:n=2") == draw_spec("no-thinking:n=16,style=plain")
    assert draw_spec("no-thinking:n=2") != draw_spec("no-thinking:n=2,style=tags")
    assert draw_spec("beam:n=4") is None and draw_spec("early-stop:max_n=4") is None
