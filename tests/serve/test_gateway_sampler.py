"""Sampler settings in a gateway request reach the strategy's engine calls."""

from __future__ import annotations

from typing import Any

from testtime.backends.scripted import ScriptedBackend


def test_gateway_request_sampler_fields_reach_the_backend(serve: Any) -> None:
    backend = ScriptedBackend.cycle(["The answer is 2."])
    with serve(backend) as gw:
        ask = {"model": "scripted", "messages": [{"role": "user", "content": "1+1?"}]}
        ok = gw.post("/v1/chat/completions", {**ask, "top_p": 0.5, "top_k": 7, "min_p": 0.05,
                                              "repeat_penalty": 1.2})
        assert ok.status_code == 200, ok.text
        req = backend.requests[-1]
        assert (req.top_p, req.top_k, req.min_p, req.repeat_penalty) == (0.5, 7, 0.05, 1.2)
        gw.post("/v1/chat/completions", ask)
        assert backend.requests[-1].top_p is None and backend.requests[-1].top_k is None
        bad = gw.post("/v1/chat/completions", {**ask, "top_p": 3})
        assert bad.status_code == 400 and "top_p" in bad.text
