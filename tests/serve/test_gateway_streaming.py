"""Token streaming of `single` through a streaming backend, including a failure mid-stream."""

from __future__ import annotations

from typing import Any

import openai
import pytest

ASK = [{"role": "user", "content": "Count."}]


def test_single_streams_word_by_word_with_usage(serve: Any, word_stream: Any) -> None:
    with serve(word_stream()) as gw:
        c = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
        chunks = list(c.chat.completions.create(
            model="scripted", messages=ASK, stream=True,  # type: ignore[arg-type]
            stream_options={"include_usage": True}, max_tokens=3))
        pieces = [ch.choices[0].delta.content for ch in chunks
                  if ch.choices and ch.choices[0].delta.content]
        assert pieces == ["one", " two", " three"]
        assert chunks[0].choices[0].delta.role == "assistant"
        assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "length"
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3


def test_failure_mid_stream_is_an_error_event(serve: Any, word_stream: Any) -> None:
    with serve(word_stream(fail_after=2)) as gw:
        c = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
        got: list[str] = []
        with pytest.raises(openai.APIError, match="upstream failed"):
            for ch in c.chat.completions.create(model="scripted", messages=ASK,  # type: ignore[arg-type]
                                                stream=True):
                if ch.choices and ch.choices[0].delta.content:
                    got.append(ch.choices[0].delta.content)
        assert got == ["one", " two"]
    with serve(word_stream(fail_after=0)) as gw:
        c = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.APIStatusError) as before_first_byte:
            list(c.chat.completions.create(model="scripted", messages=ASK,  # type: ignore[arg-type]
                                           stream=True))
        assert before_first_byte.value.status_code == 502
