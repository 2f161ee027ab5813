"""LLM judge (P(yes) and sampled verdicts) and listwise selection, on a scripted judge."""

from __future__ import annotations

import asyncio
import math

import pytest
from verifier_helpers import PROBLEM, cand

from testtime.backends.scripted import ScriptedBackend
from testtime.budget import Ledger
from testtime.registry import SpecError
from testtime.strategies.base import make_strategy, open_context
from testtime.types import GenerationRequest, Prompt
from testtime.verifiers import VerifyContext, make_verifier
from testtime.verifiers.verdicts import JudgeError, shared_backend

RIGHT = cand("6 * 7 = 42. The answer is 42.", "42")
WRONG = cand("6 * 7 = 48. The answer is 48.", "48")


def _judge_tops(prompt: Prompt, text: str) -> dict[str, float]:
    """A judge that believes answers of 42: P(yes)=0.9 for them, 0.2 otherwise."""
    user = prompt.messages[-1].content
    p_yes = 0.9 if "answer is: 42" in user else 0.2
    return {"Yes": math.log(p_yes * 0.8), " yes": math.log(p_yes * 0.2),
            "No": math.log(1 - p_yes), "Maybe": math.log(0.01)}


def _judge_text(prompt: Prompt, i: int, req: GenerationRequest) -> str:
    """Sampled verdicts: 42 gets yes on 3 of 4 samples, others 1 of 4."""
    good = "answer is: 42" in prompt.messages[-1].content
    return "Yes." if i < (3 if good else 1) else "No, it is wrong."


async def test_judge_scores_p_yes_from_top_logprobs() -> None:
    backend = ScriptedBackend(responder=_judge_text, top_logprobs=_judge_tops)
    ledger = Ledger()
    scores = await make_verifier("judge").score(PROBLEM, [RIGHT, WRONG],
                                                VerifyContext(backend=backend, ledger=ledger))
    assert [round(s.value, 6) for s in scores] == [0.9, 0.2]
    assert all(r.top_logprobs > 0 and r.max_tokens == 1 for r in backend.requests)
    assert ledger.usage.verifier_calls == 2 and ledger.usage.verifier_tokens > 0
    assert ledger.usage.generated_tokens == 0


async def test_judge_without_logprobs_counts_sampled_yes() -> None:
    backend = ScriptedBackend(responder=_judge_text)
    scores = await make_verifier("judge:k=4").score(
        PROBLEM, [RIGHT, WRONG], VerifyContext(backend=backend))
    assert [s.value for s in scores] == [0.75, 0.25]
    assert "3 yes / 1 no" in (scores[0].detail or "")


async def test_judge_mode_sample_skips_logprobs() -> None:
    backend = ScriptedBackend(responder=_judge_text, top_logprobs=_judge_tops)
    scores = await make_verifier("judge:mode=sample,k=4").score(
        PROBLEM, [RIGHT], VerifyContext(backend=backend))
    assert scores[0].value == 0.75
    assert all(r.top_logprobs == 0 for r in backend.requests)


async def test_judge_can_use_its_own_backend() -> None:
    verifier = make_verifier("judge:backend=[scripted:text=Yes],mode=sample,k=2")
    policy = ScriptedBackend(responder=lambda p, i, r: "No")
    scores = await verifier.score(PROBLEM, [WRONG], VerifyContext(backend=policy))
    assert scores[0].value == 1.0 and policy.requests == []


async def test_judge_without_any_backend_is_a_clear_error() -> None:
    with pytest.raises(JudgeError, match="needs a model"):
        await make_verifier("judge").score(PROBLEM, [RIGHT], VerifyContext())


def test_bad_judge_specs() -> None:
    with pytest.raises(SpecError, match="mode"):
        make_verifier("judge:mode=maybe")
    with pytest.raises(SpecError, match="unknown backend"):
        make_verifier("judge:backend=[nowhere:x]")
    with pytest.raises(SpecError, match="slots"):
        make_verifier("judge:backend=[embedded:qwen2.5-coder-0.5b,slots=0]")


async def test_verifiers_naming_the_same_judge_share_one_backend() -> None:
    spec = "judge:backend=[scripted:text=Yes,max_n=7],mode=sample,k=2"
    judge = shared_backend("scripted:text=Yes,max_n=7")
    assert isinstance(judge, ScriptedBackend)
    before = len(judge.requests)
    policy = ScriptedBackend(responder=lambda p, i, r: "No")
    for candidate in (RIGHT, WRONG):  # a sweep builds a verifier per unit
        scores = await make_verifier(spec).score(PROBLEM, [candidate],
                                                 VerifyContext(backend=policy))
        assert scores[0].value == 1.0
    assert len(judge.requests) - before == 2 and policy.requests == []


async def test_best_of_n_with_judge_picks_the_judged_answer() -> None:
    texts = ["6 * 7 = 48. The answer is 48.", "6 * 7 = 42. The answer is 42.",
             "The answer is 48."]
    samples = iter(texts * 2)

    def respond(prompt: Prompt, i: int, req: GenerationRequest) -> str:
        if req.top_logprobs or "Proposed solution" in prompt.messages[-1].content:
            return "Yes"
        return next(samples)

    backend = ScriptedBackend(responder=respond, top_logprobs=_judge_tops)
    strategy = make_strategy("best-of-n:n=3,verifier=judge")
    result = await strategy.run(PROBLEM, open_context(strategy, backend))
    assert result.answer == "42"
    assert result.usage.verifier_calls == 3 and result.usage.calls == 1


def _select_tops(prompt: Prompt, text: str) -> dict[str, float]:
    """A selector that picks whichever position holds the answer 42 (prob 0.7)."""
    user = prompt.messages[-1].content
    shown = user.count("Solution ")
    good = [i for i in range(1, shown + 1)
            if f"Solution {i}:" in user and "(final answer: 42)" in
            user.split(f"Solution {i}:")[1].split("Solution ")[0]]
    out = {}
    for i in range(1, shown + 1):
        out[str(i)] = math.log(0.7 if i in good else 0.3 / max(shown - len(good), 1))
    return out


async def test_judge_select_scores_are_pick_probabilities() -> None:
    backend = ScriptedBackend(responder=lambda p, i, r: "1", top_logprobs=_select_tops)
    scores = await make_verifier("judge-select:group=2,rounds=2").score(
        PROBLEM, [WRONG, RIGHT], VerifyContext(backend=backend))
    assert [round(s.value, 6) for s in scores] == [0.3, 0.7]
    assert len(backend.requests) == 2


async def test_judge_select_samples_picks_without_logprobs_and_never_caches() -> None:
    backend = ScriptedBackend(responder=lambda p, i, r: "2" if i < 3 else "1")
    verifier = make_verifier("judge-select:k=4,mode=sample")
    for _ in range(2):
        scores = await verifier.score(PROBLEM, [WRONG, RIGHT, WRONG],
                                      VerifyContext(backend=backend))
        assert [s.value for s in scores] == [0.25, 0.75, 0.0]
    assert len(backend.requests) == 2


async def test_judge_select_gives_no_candidate_a_free_win_for_being_alone() -> None:
    # Five candidates in groups of two used to leave the fifth alone, scored 1.0: best-of-n
    # then picked the last sample whatever it said.
    backend = ScriptedBackend(responder=lambda p, i, r: "1", top_logprobs=_select_tops)
    candidates = [RIGHT, WRONG, RIGHT, WRONG, WRONG]
    scores = await make_verifier("judge-select:group=2").score(
        PROBLEM, candidates, VerifyContext(backend=backend))
    assert [round(s.value, 6) for s in scores] == [0.7, 0.3, 0.7, 0.3, 0.3]
    assert max(range(5), key=lambda i: (scores[i].value, i)) == 2  # a right one, not the last
    shown = [r.prompt.messages[-1].content.count("Solution ") for r in backend.requests]
    assert shown == [2, 2, 2]
    alone = await make_verifier("judge-select").score(PROBLEM, [WRONG],
                                                     VerifyContext(backend=backend))
    assert alone[0].value == 0.5  # nothing to compare with: no evidence either way


def _checking_judge(prompt: Prompt, i: int, req: GenerationRequest) -> str:
    """A judge that recomputes 6 * 7 and says whether the proposed answer matches."""
    good = "answer is: 42" in prompt.messages[-1].content
    if req.max_tokens == 1:
        return "Yes" if good else "No"
    return f"6 * 7 = 42.\nVerdict: {'Yes' if good else 'No'}"


def _checked_tops(prompt: Prompt, text: str) -> dict[str, float]:
    """P(yes) 0.95 after working that agrees with the proposed answer, 0.1 otherwise."""
    assert prompt.prefix.endswith("\nVerdict:") and "6 * 7 = 42." in prompt.prefix
    p_yes = 0.95 if "answer is: 42" in prompt.messages[-1].content else 0.1
    return {" Yes": math.log(p_yes), " No": math.log(1 - p_yes)}


async def test_judge_thinks_before_its_verdict_and_reads_p_yes_after_its_working() -> None:
    backend = ScriptedBackend(responder=_checking_judge, top_logprobs=_checked_tops)
    ledger = Ledger()
    scores = await make_verifier("judge:think=64").score(
        PROBLEM, [RIGHT, WRONG], VerifyContext(backend=backend, ledger=ledger))
    assert [round(s.value, 6) for s in scores] == [0.95, 0.1]
    working = [r for r in backend.requests if r.max_tokens == 64]
    verdicts = [r for r in backend.requests if r.max_tokens == 1]
    assert len(working) == len(verdicts) == 2
    assert all(r.stop == ("Verdict",) and r.temperature == 0 for r in working)
    assert all("solve the problem yourself" in r.prompt.messages[-1].content for r in working)
    assert ledger.usage.verifier_calls == 4 and ledger.usage.generated_tokens == 0


async def test_judge_thinking_without_logprobs_counts_sampled_verdict_lines() -> None:
    backend = ScriptedBackend(responder=_checking_judge)
    scores = await make_verifier("judge:think=64,k=3,mode=sample").score(
        PROBLEM, [RIGHT, WRONG], VerifyContext(backend=backend))
    assert [s.value for s in scores] == [1.0, 0.0]
    assert all(r.max_tokens == 72 and r.n == 3 for r in backend.requests)


async def test_judge_thinking_falls_back_to_sampling_on_the_question_itself() -> None:
    backend = ScriptedBackend(responder=_checking_judge)  # logprobs, but no top logprobs
    scores = await make_verifier("judge:think=64,k=3").score(
        PROBLEM, [RIGHT, WRONG], VerifyContext(backend=backend))
    assert [s.value for s in scores] == [1.0, 0.0]
    sampled = [r for r in backend.requests if r.n == 3]
    assert len(sampled) == 2 and all(r.prompt.prefix == "" for r in sampled)


def _solving_judge(prompt: Prompt, i: int, req: GenerationRequest) -> str:
    """A judge that solves 6 * 7 when shown the bare problem (and says Yes to anything else)."""
    if "Proposed solution" in prompt.messages[-1].content:
        return "Yes"
    return "6 * 7 = 42. The answer is \\boxed{42}."


def _agreement_tops(prompt: Prompt, text: str) -> dict[str, float]:
    """P(yes) 0.9 when the reference and proposed final answers are both 42, else 0.1."""
    agree = ("The reference final answer is: 42\nThe proposed final answer is: 42"
             in prompt.messages[-1].content)
    return {"Yes": math.log(0.9 if agree else 0.1), "No": math.log(0.1 if agree else 0.9)}


async def test_judge_grades_against_its_own_solution_made_once_per_problem() -> None:
    backend = ScriptedBackend(responder=_solving_judge, top_logprobs=_agreement_tops)
    ledger = Ledger()
    judge = make_verifier("judge:solve=64")
    ctx = VerifyContext(backend=backend, ledger=ledger)
    scores = await judge.score(PROBLEM, [RIGHT, WRONG], ctx)
    assert [round(s.value, 6) for s in scores] == [0.9, 0.1]
    again = await judge.score(PROBLEM, [WRONG.model_copy(update={"text": "It is 48."})], ctx)
    assert round(again[0].value, 6) == 0.1
    solves = [r for r in backend.requests if r.max_tokens == 64]
    assert len(solves) == 1 and solves[0].temperature == 0
    assert solves[0].prompt == PROBLEM.prompt()
    graded = [r.prompt.messages[-1].content for r in backend.requests if r.max_tokens == 1]
    assert len(graded) == 3
    assert all("Reference solution:\n6 * 7 = 42." in text for text in graded)
    assert all(text.endswith("equal the reference final answer? Reply with only Yes or No.")
               for text in graded)
    assert ledger.usage.verifier_calls == 4 and ledger.usage.generated_tokens == 0


async def test_judge_reference_without_a_final_answer_shows_only_the_working() -> None:
    backend = ScriptedBackend(responder=lambda p, i, r: "I cannot tell" if r.max_tokens > 1
                              else "Yes", top_logprobs=_agreement_tops)
    scores = await make_verifier("judge:solve=16").score(
        PROBLEM, [RIGHT], VerifyContext(backend=backend))
    graded = backend.requests[-1].prompt.messages[-1].content
    assert "Reference solution:\nI cannot tell" in graded
    assert "reference final answer is" not in graded and round(scores[0].value, 6) == 0.1


async def test_judge_thinking_against_a_reference_compares_before_its_verdict() -> None:
    def respond(prompt: Prompt, i: int, req: GenerationRequest) -> str:
        if "Proposed solution" not in prompt.messages[-1].content:
            return "The answer is \\boxed{42}."
        return "Both say 42.\nVerdict: Yes" if req.n == 1 else "No"

    backend = ScriptedBackend(responder=respond, top_logprobs=_agreement_tops)
    scores = await make_verifier("judge:solve=32,think=64").score(
        PROBLEM, [RIGHT, WRONG], VerifyContext(backend=backend))
    assert [round(s.value, 6) for s in scores] == [0.9, 0.1]
    working = [r for r in backend.requests if r.max_tokens == 64]
    assert len(working) == 2 and all(
        "Compare the proposed solution with the reference solution step by step"
        in r.prompt.messages[-1].content for r in working)


async def test_judge_keeps_a_bounded_number_of_its_own_solutions(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("testtime.verifiers.judge.KEPT_REFERENCES", 2)
    backend = ScriptedBackend(responder=_solving_judge, top_logprobs=_agreement_tops)
    judge = make_verifier("judge:solve=8")
    problems = [PROBLEM.model_copy(update={"id": f"p{i}"}) for i in range(3)]
    for problem in problems:
        await judge.score(problem, [RIGHT], VerifyContext(backend=backend))
    for problem in (problems[2], problems[0]):  # the newest is kept, the oldest solved again
        await judge.score(problem, [WRONG], VerifyContext(backend=backend))
    assert sum(r.max_tokens == 8 for r in backend.requests) == 4


async def test_judge_asked_at_once_about_one_problem_solves_it_once() -> None:
    backend = ScriptedBackend(responder=_solving_judge, top_logprobs=_agreement_tops,
                              delay=0.01)
    judge = make_verifier("judge:solve=8")
    ctx = VerifyContext(backend=backend)
    scores = await asyncio.gather(judge.score(PROBLEM, [RIGHT], ctx),
                                  judge.score(PROBLEM, [WRONG], ctx))
    assert [round(s[0].value, 6) for s in scores] == [0.9, 0.1]
    assert sum(r.max_tokens == 8 for r in backend.requests) == 1
