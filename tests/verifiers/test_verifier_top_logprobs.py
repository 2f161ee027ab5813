"""top_logprobs plumbing the judges rely on: request bodies and reply parsing."""

from __future__ import annotations

from testtime.backends.embedded import chat_request, top_dict
from testtime.backends.openai import OpenAIBackend
from testtime.types import GenerationRequest, Prompt

REQ = GenerationRequest(prompt=Prompt.chat("ok?"), max_tokens=1, top_logprobs=3)


def test_chat_body_asks_for_top_logprobs_only_when_wanted() -> None:
    body = chat_request(REQ.prompt, REQ, 1)
    assert body["logprobs"] is True and body["top_logprobs"] == 3
    plain = chat_request(REQ.prompt, REQ.model_copy(update={"top_logprobs": 0}), 1)
    assert "top_logprobs" not in plain and "logprobs" not in plain


def test_top_dict_keeps_the_best_logprob_per_token() -> None:
    items = [{"token": "Yes", "logprob": -0.5}, {"token": "No", "logprob": -1.0},
             {"token": "Yes", "logprob": -3.0}]
    assert top_dict(items) == {"Yes": -0.5, "No": -1.0}
    assert top_dict({"a": -1}) == {"a": -1.0}


async def test_openai_chat_and_completions_replies_carry_top_logprobs() -> None:
    chat = OpenAIBackend(url="http://x/v1", model="m")
    reply = {"choices": [{"index": 0, "message": {"content": "Yes"}, "logprobs": {"content": [
        {"token": "Yes", "logprob": -0.1,
         "top_logprobs": [{"token": "Yes", "logprob": -0.1}, {"token": "No", "logprob": -2.5}]},
    ]}}], "usage": {"completion_tokens": 1, "prompt_tokens": 5}}
    gen = chat._parse(reply, REQ, 1, 0.0)
    assert gen.completions[0].top_logprobs == ({"Yes": -0.1, "No": -2.5},)
    await chat.close()
    comp = OpenAIBackend(url="http://x/v1", model="m", mode="completions")
    path, body = comp._body(REQ, 1, "m")
    assert path == "/completions" and body["logprobs"] == 3
    reply = {"choices": [{"index": 0, "text": " Yes", "logprobs": {
        "token_logprobs": [-0.2], "top_logprobs": [{" Yes": -0.2, " No": -1.7}]}}]}
    gen = comp._parse(reply, REQ, 1, 0.0)
    assert gen.completions[0].top_logprobs == ({" Yes": -0.2, " No": -1.7},)
    await comp.close()
