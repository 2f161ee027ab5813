"""reward-http against vLLM-shaped pooling and classify replies (httpx mock transport)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from verifier_helpers import PROBLEM, cand

from testtime.budget import Ledger
from testtime.verifiers import VerifyContext, make_verifier
from testtime.verifiers.hf import RewardModelError

SOLUTION = "Step 1: 6 * 7 = 42.\n\nStep 2: The answer is 42."


def _server(reply: Any, seen: list[dict[str, Any]], status: int = 200) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append({"path": request.url.path, **json.loads(request.content)})
        return httpx.Response(status, json=reply(seen[-1]) if callable(reply) else reply)
    return httpx.MockTransport(handle)


def _verifier(spec: str, reply: Any, seen: list[dict[str, Any]], status: int = 200) -> Any:
    v = make_verifier(spec)
    v.inner.use_transport(_server(reply, seen, status))
    return v


async def test_pooling_prm_rows_become_step_scores() -> None:
    seen: list[dict[str, Any]] = []
    reply = {"data": [{"index": 0, "data": [[0.1, 0.9], [0.4, 0.6]]}],
             "usage": {"prompt_tokens": 37}}
    v = _verifier("reward-http:url=http://rm:8000/v1,model=prm,family=qwen-prm,split=blank",
                  reply, seen)
    ledger = Ledger()
    scores = await v.score(PROBLEM, [cand(SOLUTION, "42")], VerifyContext(ledger=ledger))
    assert scores[0].steps == (0.9, 0.6) and scores[0].value == 0.6
    assert seen[0]["path"] == "/pooling" and seen[0]["model"] == "prm"
    assistant = seen[0]["messages"][-1]["content"]
    assert assistant == "Step 1: 6 * 7 = 42.<extra_0>Step 2: The answer is 42.<extra_0>"
    assert ledger.usage.verifier_tokens == 37 and ledger.usage.verifier_calls == 1


async def test_math_shepherd_layout_and_positive_column() -> None:
    seen: list[dict[str, Any]] = []
    reply = {"data": [{"data": [[0.8, 0.2], [0.3, 0.7]]}]}
    v = _verifier("reward-http:url=http://rm,family=math-shepherd,positive=0,agg=product",
                  reply, seen)
    scores = await v.score(PROBLEM, [cand(SOLUTION)], VerifyContext())
    assert scores[0].steps == (0.8, 0.3)
    assert scores[0].value == pytest.approx(0.24)
    assert seen[0]["input"].endswith("Step 1: 6 * 7 = 42. ки\nStep 2: The answer is 42. ки")


async def test_classify_outcome_reward_and_logit_values() -> None:
    seen: list[dict[str, Any]] = []
    v = _verifier("reward-http:url=http://rm,api=classify",
                  {"data": [{"probs": [0.25, 0.75], "label": "good"}]}, seen)
    scores = await v.score(PROBLEM, [cand(SOLUTION)], VerifyContext())
    assert scores[0].value == 0.75 and scores[0].steps is None
    assert seen[0]["path"] == "/classify"
    v2 = _verifier("reward-http:url=http://rm", {"data": [{"data": [0.0]}]}, [])
    assert (await v2.score(PROBLEM, [cand("x")], VerifyContext()))[0].value == 0.0
    v3 = _verifier("reward-http:url=http://rm", {"data": [{"data": 2.0}]}, [])
    assert (await v3.score(PROBLEM, [cand("x")], VerifyContext()))[0].value == pytest.approx(
        0.8807970779778823)


@pytest.mark.parametrize(("reply", "status", "message"), [
    ({"error": "boom"}, 500, "HTTP 500"),
    ({"nothing": 1}, 200, "unexpected reply"),
    ({"data": [{"data": [[0.1, 0.9]]}]}, 200, "sent 2 steps but the server scored 1"),
])
async def test_server_problems_are_clear_errors(reply: Any, status: int, message: str) -> None:
    v = _verifier("reward-http:url=http://rm,family=qwen-prm", reply, [], status)
    with pytest.raises(RewardModelError, match=message):
        await v.score(PROBLEM, [cand(SOLUTION)], VerifyContext())


async def test_unreachable_server() -> None:
    v = make_verifier("reward-http:url=http://127.0.0.1:9,timeout=2")
    with pytest.raises(RewardModelError, match="unreachable"):
        await v.score(PROBLEM, [cand("x")], VerifyContext())
