"""Sampler settings (top_p, top_k, min_p, repeat_penalty): unset by default, settable in any
strategy spec, the gateway request and sweeps, sent to the engine and recorded with the run."""

from __future__ import annotations

import pytest

from testtime.backends.embedded import EmbeddedBackend, chat_request
from testtime.backends.scripted import ScriptedBackend
from testtime.eval.runner import record, solve
from testtime.registry import SpecError
from testtime.strategies import make_strategy
from testtime.tasks.arith import ArithTask
from testtime.types import GenerationRequest, Problem, Prompt

PROBLEM = Problem(id="p", question="What is 2 + 2?", reference="4")
SAMPLERS = ("top_p", "top_k", "min_p", "repeat_penalty")


def test_requests_send_no_sampler_setting_the_user_did_not_choose() -> None:
    body = chat_request(Prompt.chat("hi"), GenerationRequest(prompt=Prompt.chat("hi")), 2)
    assert not set(SAMPLERS) & set(body)
    chosen = GenerationRequest(prompt=Prompt.chat("hi"), top_k=5, min_p=0.2)
    body = chat_request(chosen.prompt, chosen, 1)
    assert body["top_k"] == 5 and body["min_p"] == 0.2
    assert "top_p" not in body and "repeat_penalty" not in body


@pytest.mark.parametrize("spec", [
    "self-consistency:n=3", "best-of-n:n=2,verifier=confidence", "beam:n=2,width=2,max_depth=1",
    "single"])
async def test_every_strategy_passes_its_spec_sampler_settings_to_each_call(spec: str) -> None:
    backend = ScriptedBackend.cycle(["Step.\n\nThe answer is 4."])
    options = "top_p=0.9,top_k=20,min_p=0.1,repeat_penalty=1.1"
    full = f"{spec},{options}" if ":" in spec else f"{spec}:{options}"
    result = await solve(PROBLEM, make_strategy(full), backend, spec=full)
    assert backend.requests
    for req in backend.requests:
        assert (req.top_p, req.top_k, req.min_p, req.repeat_penalty) == (0.9, 20, 0.1, 1.1)
    assert record(PROBLEM, result)["extra"]["sampling"] == {
        "top_p": 0.9, "top_k": 20, "min_p": 0.1, "repeat_penalty": 1.1}

    backend = ScriptedBackend.cycle(["The answer is 4."])
    result = await solve(PROBLEM, make_strategy(spec), backend, spec=spec)
    for req in backend.requests:
        assert (req.top_p, req.top_k, req.min_p, req.repeat_penalty) == (None,) * 4
    assert record(PROBLEM, result)["extra"]["sampling"] == {}


@pytest.mark.parametrize("bad", ["top_p=0", "top_p=1.5", "top_k=-1", "min_p=2",
                                 "repeat_penalty=0", "top_k=many"])
def test_bad_sampler_settings_are_spec_errors(bad: str) -> None:
    with pytest.raises(SpecError, match=bad.split("=")[0]):
        make_strategy(f"self-consistency:n=2,{bad}")


@pytest.mark.model
async def test_spec_top_p_top_k_min_p_reach_the_engine(smollm: EmbeddedBackend) -> None:
    """Each setting, set so that only the likeliest token survives, makes four hot samples with
    different seeds one and the same text: the engine received it. Without them they differ.

    (Not compared with a temperature-0 run: a prompt-cache hit rounds SmolLM2's near-tied
    logits differently, so greedy text can differ between calls.)
    """
    problem = ArithTask(level=1).problems(1)[0]
    hot = "self-consistency:n=4,temperature=1.5,max_tokens=24"
    free = await solve(problem, make_strategy(hot), smollm, seed=3)
    assert len({c.text for c in free.candidates}) > 1
    for setting in ("top_k=1", "top_p=0.001", "min_p=1.0"):
        res = await solve(problem, make_strategy(f"{hot},{setting}"), smollm, seed=3)
        assert len(res.candidates) == 4
        assert len({c.text for c in res.candidates}) == 1, setting
