"""Small builders shared by the verifier tests."""

from __future__ import annotations

from testtime.types import Candidate, Completion, Problem

PROBLEM = Problem(id="p1", question="What is 6 * 7?", reference="42")


def cand(text: str, answer: str | None = None, logprobs: tuple[float, ...] | None = None
         ) -> Candidate:
    """A candidate with the given text, answer and token logprobs."""
    return Candidate(text=text, answer=answer,
                     completion=Completion(text=text, generated_tokens=len(text.split()),
                                           logprobs=logprobs))
