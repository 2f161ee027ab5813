"""The gateway bills everything a request caused, judges and stopped work included."""

from __future__ import annotations

import time
from typing import Any

from testtime.backends.scripted import ScriptedBackend
from testtime.types import GenerationRequest, Prompt
from testtime.verifiers.judge import JUDGE_SYSTEM

ASK = [{"role": "user", "content": "What is 1+1?"}]
KEY = {"Authorization": "Bearer k"}


def respond(prompt: Prompt, i: int, req: GenerationRequest) -> str:
    if prompt.messages[0].content == JUDGE_SYSTEM:
        return "let me check this carefully " * 200 + "Verdict: Yes"
    return f"One plus one: the answer is {2 + i % 2}."


def test_a_thinking_judge_stays_within_the_request_budget_and_is_billed(serve: Any) -> None:
    backend = ScriptedBackend(responder=respond)
    spec = "best-of-n:n=4,verifier=[judge:think=8192,k=64,mode=sample]"
    with serve(backend, request_budget="total=900", api_keys={"k": {"budget_tokens": 100000}},
               allowed_strategies=["single", "best-of-n"]) as gw:
        reply = gw.post("/v1/chat/completions", {
            "model": "scripted", "messages": ASK, "testtime": {"strategy": spec,
                                                               "details": True}},
            headers=KEY)
        assert reply.status_code == 200, reply.text
        body = reply.json()
        usage = body["usage"]
        details = usage["testtime"]
        assert details["verifier_tokens"] > 0 and details["verifier_calls"] > 0
        assert usage["total_tokens"] <= 900
        assert body["choices"][0]["testtime"]["budget_exhausted"] is True
        # The judge asked for 64 × 8200 tokens; the plan clipped it to what was left.
        judged = [r for r in backend.requests if r.prompt.messages[0].content == JUDGE_SYSTEM]
        assert judged and all(r.n * r.max_tokens < 900 for r in judged)
        assert gw.app.state.gateway.guard.spent()["key-" + _hash("k")] == usage["total_tokens"]


def test_a_timed_out_request_charges_the_key_for_the_work_it_stopped(serve: Any) -> None:
    words = " ".join(["word"] * 40)
    backend = ScriptedBackend(responder=lambda p, i, r: words, delay=0.05)  # 2 s in all
    with serve(backend, request_timeout=0.6, api_keys={"k": {"budget_tokens": 100000}}) as gw:
        reply = gw.post("/v1/chat/completions", {"model": "scripted", "messages": ASK},
                        headers=KEY)
        assert reply.status_code == 504
        deadline = time.monotonic() + 5
        while not gw.app.state.gateway.guard.spent()["key-" + _hash("k")] and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        spent = gw.app.state.gateway.guard.spent()["key-" + _hash("k")]
        # The prompt (4 words) and the ~12 words produced before the deadline are charged.
        assert 4 + 5 <= spent < 4 + 40
        assert backend.cancelled == 1


def _hash(key: str) -> str:
    import hashlib

    return hashlib.sha256(key.encode()).hexdigest()[:8]
