"""deepconf, certainty-probe and short-m through the gateway: traces stopped online are billed."""

from __future__ import annotations

from typing import Any

from testtime.backends.scripted import ScriptedBackend
from testtime.types import GenerationRequest, Prompt

ASK = [{"role": "user", "content": "What is 6*7?"}]
SURE = {"a": -0.05, "b": -3.0}
UNSURE = {"a": -1.0, "b": -1.2}


def respond(prompt: Prompt, i: int, req: GenerationRequest) -> str:
    if prompt.prefix:
        return "42}"
    answer = "7" if req.seed is not None and req.seed % 3 == 0 else "42"
    return "step " * (30 + (req.seed or 0) % 5) + f"The answer is {answer}."


def tops(text: str, i: int) -> dict[str, float]:
    return UNSURE if "7." in text and i >= 2 else SURE


def test_online_strategies_through_the_gateway(serve: Any) -> None:
    backend = ScriptedBackend(responder=respond, token_tops=tops)
    with serve(backend, allowed_strategies=["single", "deepconf", "certainty-probe",
                                            "short-m"]) as gw:
        for spec in ("deepconf:n=12,warmup=4,window=2,consensus=1.0",
                     "certainty-probe:n=2,probe_every=5,k=2", "short-m:n=6,m=2"):
            reply = gw.post("/v1/chat/completions", {
                "model": "scripted", "messages": ASK, "seed": 5,
                "testtime": {"strategy": spec, "details": True}})
            assert reply.status_code == 200, reply.text
            body = reply.json()
            usage = body["usage"]["testtime"]
            assert body["choices"][0]["testtime"]["answer"] == "42"
            assert usage["stopped_traces"] >= 1 and usage["stopped_tokens"] > 0
            assert usage["generated_tokens"] > usage["stopped_tokens"]
