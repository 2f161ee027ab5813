"""Search and sequential strategies on the scripted backend with a scripted process verifier.

Every scenario has a known right answer, so each test checks the algorithm's idea: beam search
finds the path greedy misses, particle filtering keeps diversity beam search loses, budget
forcing hits min/max thinking exactly, first-finish cancels the slow samples, early stopping
spends less on easy problems.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

from testtime.backends.scripted import ScriptedBackend
from testtime.budget import Budget
from testtime.eval.runner import run_problems, solve
from testtime.registry import SpecError
from testtime.strategies import make_strategy
from testtime.strategies.base import Context
from testtime.strategies.early_stop import leader_probability
from testtime.strategies.resampling import anneal, normalized_entropy, softmax
from testtime.types import Candidate, GenerationRequest, Problem, Prompt, Result, Score
from testtime.verifiers.base import VerifyContext
from testtime.verifiers.steps import split_steps

PROBLEM = Problem(id="p", question="What is 2 + 2?", reference="4")


class StepVerifier:
    """A scripted process reward: each step scores the value of the first key it contains."""

    needs_logprobs: ClassVar[bool] = False
    needs_reference: ClassVar[bool] = False

    def __init__(self, table: dict[str, float], default: float = 0.5) -> None:
        self.table = table
        self.default = default
        self.calls = 0

    def step_value(self, step: str) -> float:
        return next((v for k, v in self.table.items() if k in step), self.default)

    async def score(self, problem: Problem, candidates: Sequence[Candidate],
                    ctx: VerifyContext) -> list[Score]:
        self.calls += 1
        out = []
        for c in candidates:
            values = tuple(self.step_value(s) for s in split_steps(c.text)) or (0.0,)
            out.append(Score(value=values[-1], steps=values))
        return out


def tree_responder(paths: Mapping[str, Sequence[str]],
                   firsts: Sequence[str]) -> Callable[[Prompt, int, GenerationRequest], str]:
    """A model whose i-th sample at the root starts with ``firsts[i % len]`` and then follows
    ``paths[first]`` (later steps); it writes the whole rest, the stop string cuts one step."""
    def respond(prompt: Prompt, i: int, req: GenerationRequest) -> str:
        done = split_steps(prompt.prefix)
        if not done:
            first = firsts[i % len(firsts)]
            return "\n\n".join([first, *paths[first]])
        rest = list(paths[done[0]])[len(done) - 1:]
        return "\n\n".join(rest)
    return respond


async def run(spec: str, backend: ScriptedBackend, verifier: Any = None,
              budget: Budget | None = None, problem: Problem = PROBLEM, seed: int = 0) -> Result:
    return await solve(problem, make_strategy(spec), backend, verifier=verifier,
                       budget=budget, spec=spec, seed=seed)


# A: the likelier first step (greedy takes it) that leads to a wrong answer.
GREEDY_TRAP = {
    "Guess: it is about 5.": ["The answer is 5."],
    "Add: 2 + 2 = 4.": ["The answer is 4."],
}
TRAP_SCORES = {"Guess": 0.3, "Add": 0.9, "answer is 4": 0.95, "answer is 5": 0.1}


def trap_backend() -> ScriptedBackend:
    return ScriptedBackend(responder=tree_responder(
        GREEDY_TRAP, ["Guess: it is about 5.", "Add: 2 + 2 = 4."]))


async def test_beam_search_finds_the_path_greedy_misses() -> None:
    greedy = await run("single", trap_backend())
    assert greedy.answer == "5"
    stepwise_greedy = await run("beam:n=1,width=1", trap_backend(), StepVerifier(TRAP_SCORES))
    assert stepwise_greedy.answer == "5"
    backend = trap_backend()
    beam = await run("beam:n=4,width=2", backend, StepVerifier(TRAP_SCORES))
    assert beam.answer == "4"
    assert all(c.answer == "4" for c in beam.candidates)
    # depth 1: one n=4 call; depth 2: the 2 kept beams, one n=2 call each
    assert [(r.n, r.stop) for r in backend.requests] == [(4, ("\n\n",)), (2, ("\n\n",)),
                                                         (2, ("\n\n",))]
    assert beam.candidates[0].score is not None and beam.candidates[0].score.steps == (0.9, 0.95)


async def test_beam_children_continue_the_parent_prompt_byte_for_byte() -> None:
    backend = trap_backend()
    result = await run("beam:n=4,width=2", backend, StepVerifier(TRAP_SCORES))
    second = backend.requests[1:]
    assert all(r.prompt.prefix == "Add: 2 + 2 = 4.\n\n" for r in second)
    assert all(r.prompt.messages == backend.requests[0].prompt.messages for r in second)
    assert result.usage.cached_tokens > 0
    assert result.usage.calls == 3


async def test_lookahead_sees_past_a_step_that_only_looks_good() -> None:
    paths = {"Shiny start.": ["Then a blunder.", "The answer is 5."],
             "Plain start.": ["Then the sum 2 + 2 = 4.", "The answer is 4."]}
    scores = {"Shiny": 0.8, "blunder": 0.05, "Plain": 0.5, "sum": 0.9,
              "answer is 4": 0.95, "answer is 5": 0.1}
    def backend() -> ScriptedBackend:
        return ScriptedBackend(responder=tree_responder(paths, ["Shiny start.", "Plain start."]))
    plain = await run("beam:n=2,width=2", backend(), StepVerifier(scores))
    assert plain.answer == "5"
    ahead = await run("beam:n=2,width=2,lookahead=1", backend(), StepVerifier(scores))
    assert ahead.answer == "4"
    alias = await run("lookahead:n=2,width=2", backend(), StepVerifier(scores))
    assert alias.answer == "4"
    looked = [n for n in ahead.extra["trace"] if "lookahead" in n["tags"]]
    assert {n["depth"] for n in looked} == {2, 3}


async def test_dvts_grows_independent_subtrees() -> None:
    backend = trap_backend()
    result = await run("dvts:n=4,width=2", backend, StepVerifier(TRAP_SCORES))
    assert result.answer == "4"
    assert result.extra["subtrees"] == 2
    assert len(result.candidates) == 2
    assert [r.n for r in backend.requests] == [4, 2, 2]


BRANCHES = {
    "Left: start from 2.": ["Left: add 2.", "The answer is 4."],
    "Right: start from 4.": ["Right: keep it.", "The answer is 4."],
}


def branch_backend() -> ScriptedBackend:
    return ScriptedBackend(responder=tree_responder(
        BRANCHES, ["Left: start from 2.", "Right: start from 4."]))


async def test_particle_filter_keeps_the_diversity_beam_search_loses() -> None:
    scores = {"Left": 0.55, "Right": 0.6, "answer": 0.9}
    pf_kept, beam_kept = [], []
    for seed in range(10):
        pf = await run("particle-filter:n=8", branch_backend(), StepVerifier(scores), seed=seed)
        beam = await run("beam:n=8,width=8", branch_backend(), StepVerifier(scores), seed=seed)
        assert pf.answer == beam.answer == "4"
        pf_kept.append(pf.extra["distinct_first_steps"])
        beam_kept.append(len({split_steps(c.text)[0] for c in beam.candidates}))
    assert beam_kept == [1] * 10
    assert sum(k == 2 for k in pf_kept) >= 8


async def test_entropic_particle_filter_anneals_when_weights_collapse() -> None:
    scores = {"Left": 0.2, "Right": 0.9, "answer": 0.9}
    plain_kept, entropic_kept = [], []
    for seed in range(6):
        pf = await run("particle-filter:n=8", branch_backend(), StepVerifier(scores), seed=seed)
        epf = await run("particle-filter:n=8,entropic=true,entropy_floor=0.9", branch_backend(),
                        StepVerifier(scores), seed=seed)
        plain_kept.append(pf.extra["distinct_first_steps"])
        entropic_kept.append(epf.extra["distinct_first_steps"])
        assert epf.extra["steps"][0]["beta"] < 1.0
        assert epf.extra["steps"][0]["entropy"] >= 0.9 - 1e-6
        assert pf.extra["steps"][0]["beta"] == 1.0
    assert plain_kept == [1] * 6
    assert sum(entropic_kept) > sum(plain_kept)


async def test_particle_filter_batches_copies_of_a_node_into_one_call() -> None:
    backend = branch_backend()
    await run("particle-filter:n=8", backend, StepVerifier({"Left": 0.2, "Right": 0.9}))
    assert backend.requests[0].n == 8
    later = [r.prompt.prefix for r in backend.requests[1:]]
    assert len(later) == len(set(later))
    assert sum(r.n for r in backend.requests[1:2]) == 8


async def test_mcts_finds_the_right_branch_with_and_without_rollouts() -> None:
    for spec in ("mcts:iterations=6,width=2", "mcts:iterations=6,width=2,rollouts=0"):
        result = await run(spec, trap_backend(), StepVerifier(TRAP_SCORES))
        assert result.answer == "4", spec
        root_children = [n for n in result.extra["trace"] if n["parent"] == 0]
        assert sum(n["visits"] for n in root_children) >= 2


async def test_search_trace_is_a_json_tree_and_run_writes_it(tmp_path: Path) -> None:
    result = await run("beam:n=4,width=2", trap_backend(), StepVerifier(TRAP_SCORES))
    nodes = result.extra["trace"]
    ids = {n["id"] for n in nodes}
    assert nodes[0]["parent"] is None
    assert all(n["parent"] in ids for n in nodes[1:])
    assert any("selected" in n["tags"] for n in nodes)
    records, _ = await run_problems([PROBLEM], make_strategy("beam:n=4,width=2"),
                                    trap_backend(), spec="beam", trace_dir=tmp_path,
                                    verifier=StepVerifier(TRAP_SCORES))
    assert records[0]["answer"] == "4"
    written = json.loads((tmp_path / "p.json").read_text())
    assert [n["step"] for n in written] == [n["step"] for n in nodes]


async def test_search_stays_within_budget_and_returns_best_so_far() -> None:
    budget = Budget(generated_tokens=12)
    for spec in ("beam:n=4,width=2", "dvts:n=4,width=2", "particle-filter:n=4",
                 "mcts:iterations=4,width=2"):
        result = await run(spec, trap_backend(), StepVerifier(TRAP_SCORES), budget=budget)
        assert result.usage.generated_tokens <= 12, spec
        assert result.budget_exhausted, spec
        assert result.candidates, spec


async def test_budget_forcing_caps_thinking_at_exactly_max_think() -> None:
    def ramble(prompt: Prompt, i: int, req: GenerationRequest) -> str:
        return " 4." if prompt.prefix.endswith("The answer is") else "hmm " * 100
    for style in ("plain", "tags"):
        backend = ScriptedBackend(responder=ramble)
        result = await run(f"budget-forcing:max_think=10,style={style}", backend)
        assert result.extra["thinking_tokens"] == 10
        assert result.extra["forced_end"] is True
        assert result.answer == "4"
        assert backend.requests[0].max_tokens == 10
        if style == "tags":
            assert backend.requests[0].prompt.prefix == "<think>\n"
            assert "</think>" in backend.requests[-1].prompt.prefix


async def test_budget_forcing_appends_wait_until_exactly_min_think() -> None:
    def terse(prompt: Prompt, i: int, req: GenerationRequest) -> str:
        if prompt.prefix.endswith("The answer is"):
            return " 4."
        return "Hmm.</think>" if "<think>" in prompt.prefix else "Hmm. The answer is 4."
    for style in ("plain", "tags"):
        backend = ScriptedBackend(responder=terse)
        result = await run(f"budget-forcing:min_think=7,max_think=50,style={style}", backend)
        assert result.extra["thinking_tokens"] == 7
        assert result.extra["waits"] == 6
        assert result.extra["forced_end"] is False
        assert result.text is not None and result.text.count("Wait") == 6
        assert result.answer == "4"
        assert [r.max_tokens for r in backend.requests[:3]] == [50, 49, 48]


async def test_budget_forcing_rejects_min_above_max() -> None:
    with pytest.raises(SpecError, match="min_think"):
        make_strategy("budget-forcing:min_think=20,max_think=10")


async def test_revision_extends_the_conversation_and_keeps_the_best() -> None:
    def respond(prompt: Prompt, i: int, req: GenerationRequest) -> str:
        rounds = sum(m.role == "assistant" for m in prompt.messages)
        return ["The answer is 5.", "Fixed: The answer is 4.", "Again: The answer is 6."][rounds]
    backend = ScriptedBackend(responder=respond)
    verifier = StepVerifier({"answer is 4": 0.9, "answer is 5": 0.3, "answer is 6": 0.2})
    result = await run("revision:rounds=2", backend, verifier)
    assert result.answer == "4"
    assert [c.answer for c in result.candidates] == ["5", "4", "6"]
    first, second, third = (r.prompt.messages for r in backend.requests)
    assert second[:len(first)] == first and third[:len(second)] == second
    assert "rated your previous solution 0.30" in second[-1].content
    assert result.usage.cached_tokens > 0
    last = await run("revision:rounds=2,select=last", ScriptedBackend(responder=respond),
                     verifier)
    assert last.answer == "6"


async def test_first_finish_returns_the_shortest_and_cancels_the_rest() -> None:
    backend = ScriptedBackend.cycle(
        ["Long work " * 20 + "The answer is 5.", "Quick: The answer is 4.",
         "Medium work " * 5 + "The answer is 6."], delay=0.01)
    result = await run("first-finish:n=3", backend)
    assert result.answer == "4"
    assert backend.cancelled == 2
    assert result.extra["cancelled"] == 2
    assert len(result.candidates) == 1
    assert [r.n for r in backend.requests] == [1, 1, 1]


async def test_multi_temperature_spreads_samples_and_votes() -> None:
    def respond(prompt: Prompt, i: int, req: GenerationRequest) -> str:
        return "The answer is 4." if req.temperature < 1.0 or i == 0 else "The answer is 7."
    backend = ScriptedBackend(responder=respond)
    result = await run("multi-temperature:n=7,temperatures=[0.2,0.6,1.2]", backend)
    assert sorted((r.temperature, r.n) for r in backend.requests) == [(0.2, 3), (0.6, 2),
                                                                     (1.2, 2)]
    assert result.answer == "4"
    assert result.votes == {"4": 6.0, "7": 1.0}
    with pytest.raises(SpecError, match="temperature"):
        make_strategy("multi-temperature:temperatures=[0.2,3]")


async def test_early_stop_uses_fewer_samples_on_easy_problems() -> None:
    easy = ScriptedBackend.cycle(["The answer is 4."])
    hard = ScriptedBackend.cycle(["The answer is 4.", "The answer is 5.", "The answer is 4.",
                                  "The answer is 7.", "The answer is 4.", "The answer is 4."])
    e = await run("early-stop:max_n=32,batch=4", easy)
    h = await run("early-stop:max_n=32,batch=4", hard)
    assert e.answer == h.answer == "4"
    assert e.extra["samples"] == 4
    assert e.extra["samples"] < h.extra["samples"] <= 32
    assert h.extra["confidence"] >= 0.95 or h.extra["samples"] == 32
    assert e.usage.generated_tokens < h.usage.generated_tokens


def test_leader_probability_matches_the_beta_posterior() -> None:
    assert leader_probability(0, 0) == pytest.approx(0.5)
    assert leader_probability(4, 0) == pytest.approx(31 / 32)
    assert leader_probability(3, 3) == pytest.approx(0.5)
    assert leader_probability(10, 2) == pytest.approx(1 - 92 / 8192)


def test_annealing_raises_entropy_to_the_floor() -> None:
    values = [0.9, 0.1, 0.1, 0.1]
    sharp = softmax(values, 0.05)
    assert normalized_entropy(sharp) < 0.1
    weights, beta = anneal(values, 0.05, 0.8)
    assert 0.0 < beta < 1.0
    assert normalized_entropy(weights) == pytest.approx(0.8, abs=1e-3)
    assert anneal(values, 10.0, 0.5)[1] == 1.0


@pytest.mark.parametrize("spec", ["beam:width=0", "beam:n=2,width=4", "particle-filter:n=0",
                                  "mcts:iterations=0", "early-stop:threshold=0.4",
                                  "dvts:agg=median", "beam:sep="])
def test_bad_options_are_clear_spec_errors(spec: str) -> None:
    with pytest.raises(SpecError):
        make_strategy(spec)


async def test_concurrent_calls_cannot_overrun_the_token_budget() -> None:
    ctx = Context(backend=ScriptedBackend.cycle(["a b c d e f g h"]),
                  budget=Budget(generated_tokens=10))
    groups = await asyncio.gather(*(ctx.sample(PROBLEM, 1, max_tokens=8) for _ in range(3)))
    assert ctx.ledger.usage.generated_tokens <= 10
    assert [len(g) for g in groups] == [1, 1, 0]
    assert ctx.exhausted
    assert ctx.ledger.reserved_tokens == 0 and ctx.ledger.reserved_calls == 0
