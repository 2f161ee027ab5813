"""Spec parsing and the registries' error messages."""

from __future__ import annotations

import enum

import pytest
from pydantic import BaseModel, Field

from testtime.backends import make_backend
from testtime.registry import SpecError, describe_options, split_spec
from testtime.strategies import make_strategy
from testtime.verifiers import make_verifier


def test_split_spec_handles_brackets_and_positional() -> None:
    name, opts = split_spec("best-of-n:n=8,verifier=[judge:k=3,model=x]")
    assert name == "best-of-n"
    assert opts == {"n": "8", "verifier": "judge:k=3,model=x"}
    assert split_spec("embedded:smollm2-135m,slots=4", positional="model") == (
        "embedded", {"model": "smollm2-135m", "slots": "4"})
    assert split_spec("openai:http://127.0.0.1:8080/v1", positional="url") == (
        "openai", {"url": "http://127.0.0.1:8080/v1"})


@pytest.mark.parametrize("spec", ["", ":n=3", "self-consistency:n", "x:a=1,a=2", "x:a=[1"])
def test_malformed_specs(spec: str) -> None:
    with pytest.raises(SpecError):
        split_spec(spec)


def test_strategy_options_are_validated() -> None:
    s = make_strategy("self-consistency:n=16,temperature=0.7")
    assert (s.n, s.temperature) == (16, 0.7)
    with pytest.raises(SpecError, match=r"unknown strategy 'nope'; known:.*self-consistency"):
        make_strategy("nope:n=3")
    with pytest.raises(SpecError, match="n"):
        make_strategy("self-consistency:n=zero")
    with pytest.raises(SpecError, match=r"unknown option .m. \(options: .*temperature"):
        make_strategy("self-consistency:m=3")


def test_backend_and_verifier_specs() -> None:
    b = make_backend("scripted:The answer is 5.")
    assert b.settings.text == "The answer is 5."  # type: ignore[attr-defined]
    with pytest.raises(SpecError, match="slots"):
        make_backend("embedded:smollm2-135m,slots=0")
    with pytest.raises(SpecError, match="unknown backend"):
        make_backend("vllm-nope:x")
    assert make_verifier("confidence") is not None
    with pytest.raises(SpecError, match="unknown verifier"):
        make_verifier("oracle-of-delphi")


class Colour(enum.Enum):
    RED = "red"


class Options(BaseModel):
    needed: int
    sep: str = "\n\n"
    crlf: str = "a\r\nb"
    tags: list[str] = Field(default_factory=lambda: ["x", "y"])
    colour: Colour = Colour.RED
    ratio: float = 0.5


def test_describe_options_marks_required_ones_and_escapes_defaults() -> None:
    assert describe_options(Options) == [
        "needed (required)", "sep='\\n\\n'", "crlf='a\\r\\nb'", "tags=['x', 'y']",
        "colour='red'", "ratio=0.5"]
