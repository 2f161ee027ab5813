"""Tools: the calculator refuses anything but bounded arithmetic; a registered callable gets its
schema from its signature, its arguments checked before the call, and its exceptions reported
as errors; operators enable tools by name or ``module:function``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import pytest
from pydantic import Field

from testtime.code.sandbox import available
from testtime.registry import SpecError
from testtime.tools import (
    Calculator,
    CalculatorError,
    FunctionTool,
    PythonTool,
    ToolResult,
    enable,
    evaluate,
    register_tool,
    tools,
)
from testtime.tools.calculator import formatted

NEEDS_BOX = pytest.mark.skipif(not (available("namespace") or available("userns")),
                               reason="needs a real sandbox (root or user namespaces)")


def calc(expression: str) -> str:
    return formatted(evaluate(expression))


@pytest.mark.parametrize(("expression", "value"), [
    ("50 - 14 * 3", "8"), ("0.1 + 0.2", "0.3"), ("7 / 2", "3.5"), ("2^10", "1024"),
    ("(14 * 3 - 5) / 2", "18.5"), ("10 // 3", "3"), ("-7 % 3", "2"), ("sqrt(16)", "4"),
    ("round(2.567, 2)", "2.57"), ("max(3, 4.5) * 2", "9"), ("1/3", "0.333333333333"),
    ("2 ** -2", "0.25"), ("abs(-3) + floor(2.7) + ceil(2.1)", "8"),
])
def test_the_calculator_does_exact_arithmetic(expression: str, value: str) -> None:
    assert calc(expression) == value


@pytest.mark.parametrize(("expression", "why"), [
    ("__import__('os').system('id')", "only arithmetic"),
    ("open('/etc/passwd').read()", "only arithmetic"),
    ("(1).__class__", "only arithmetic"),
    ("x + 1", "the name 'x'"),
    ("'a' * 3", "the value 'a'"),
    ("[1, 2][0]", "only arithmetic"),
    ("lambda: 1", "only arithmetic"),
    ("9 ** 9 ** 9", "exponents are limited"),
    ("10 ** 999 * 10 ** 999", "digits"),
    ("(10 ** 600) ** 2", "digits"),
    ("1 / 0", "division by zero"),
    ("(-8) ** 0.5", "not a real number"),
    ("1e999", "cannot evaluate"),
    ("-" * 300 + "1", "limited to 200 parts"),
    ("1 +" * 200 + "1", "limited to 500 characters"),
    ("", "empty"),
    ("1 +", "not an expression"),
])
def test_the_calculator_refuses_what_is_not_bounded_arithmetic(expression: str, why: str) -> None:
    with pytest.raises(CalculatorError, match=why):
        evaluate(expression)


async def test_the_calculator_tool_reports_refusals_as_failed_calls() -> None:
    tool = Calculator()
    assert await tool.call({"expression": "6 * 7"}, env=None) == ToolResult(
        ok=True, output="42", value="42", seconds=pytest.approx(0, abs=1))  # type: ignore[arg-type]
    refused = await tool.call({"expression": "__import__('os')"}, None)  # type: ignore[arg-type]
    assert not refused.ok and refused.output.startswith("error: only arithmetic")
    assert tool.parameters["required"] == ["expression"]


def lookup(city: Annotated[str, Field(description="a city name")], year: int = 2024) -> dict:
    """Population of a city.

    Longer text that the model does not need."""
    if city == "Atlantis":
        raise KeyError(city)
    return {"city": city, "year": year, "population": 1000}


async def test_a_callable_becomes_a_tool_with_its_schema_and_validated_arguments() -> None:
    tool = FunctionTool(lookup)
    assert tool.name == "lookup" and tool.description == "Population of a city."
    assert tool.parameters["properties"] == {
        "city": {"description": "a city name", "type": "string"},
        "year": {"default": 2024, "type": "integer"}}
    assert tool.parameters["required"] == ["city"]
    ok = await tool.call('{"city": "Oslo", "year": "2020"}', None)  # type: ignore[arg-type]
    assert ok.ok and ok.output == '{"city": "Oslo", "year": 2020, "population": 1000}'
    for bad, why in [({"year": 1}, "city: Field required"),
                     ({"city": "Oslo", "year": "soon"}, "year: Input should be a valid integer"),
                     ({"city": "Oslo", "country": "NO"}, "country: Extra inputs"),
                     ("{not json", "not valid JSON"), ("[1]", "must be a JSON object")]:
        result = await tool.call(bad, None)  # type: ignore[arg-type]
        assert not result.ok and why in result.output, (bad, result.output)
    raised = await tool.call({"city": "Atlantis"}, None)  # type: ignore[arg-type]
    assert not raised.ok and raised.output == "error: lookup raised KeyError: 'Atlantis'"


async def test_async_callables_run_and_slow_ones_time_out() -> None:
    async def slow(seconds: float) -> str:
        """Sleep."""
        await asyncio.sleep(seconds)
        return "done"

    tool = FunctionTool(slow, timeout=0.2)
    assert (await tool.call({"seconds": 0}, None)).output == "done"  # type: ignore[arg-type]
    late = await tool.call({"seconds": 5}, None)  # type: ignore[arg-type]
    assert not late.ok and "longer than 0.2s" in late.output


def test_callables_a_model_cannot_call_by_name_are_refused() -> None:
    def star(*args: int) -> int:
        return sum(args)

    def positional(x: int, /) -> int:
        return x

    for fn in (star, positional):
        with pytest.raises(TypeError):
            FunctionTool(fn)


async def test_long_output_is_cut_for_the_model() -> None:
    def flood() -> str:
        """Print a lot."""
        return "x" * 10_000

    result = await FunctionTool(flood).call({}, None)  # type: ignore[arg-type]
    assert result.ok and len(result.output) < 2100 and "8000 more characters" in result.output


@pytest.fixture
def registered() -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        tools.remove(name)


def test_register_tool_as_a_call_and_as_a_decorator(registered: list[str]) -> None:
    def area(width: float, height: float) -> float:
        """Area of a rectangle."""
        return width * height

    assert register_tool(area) is area

    @register_tool(name="greet", description="Say hello.")
    def hello(name: str) -> str:
        return f"hello {name}"

    registered += ["area", "greet"]
    assert {"area", "greet", "calculator", "python"} <= set(tools.names())
    assert tools.get("greet").description == "Say hello."
    with pytest.raises(ValueError, match="registered twice"):
        register_tool(lambda x: x, name="area")
    with pytest.raises(SpecError, match=r"unknown tool 'nope'; known: .*calculator"):
        tools.get("nope")


def test_operators_enable_built_ins_registered_names_and_module_functions(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "operator_tools.py").write_text(
        "def shout(text: str) -> str:\n    '''Upper-case a text.'''\n    return text.upper()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    enabled = enable(["calculator", "operator_tools:shout"])
    assert sorted(enabled) == ["calculator", "shout"]
    assert enabled["shout"].description == "Upper-case a text."
    for entry, why in [("nope", "unknown tool 'nope'"),
                       ("operator_tools:missing", "has no 'missing'"),
                       ("no_such_module_here:fn", "cannot import"),
                       ("calculator:digits=3", "takes no options"),
                       ("python:timeout=-1", "invalid python tool options")]:
        with pytest.raises(SpecError, match=why):
            enable([entry])
    with pytest.raises(SpecError, match="two enabled tools are named 'calculator'"):
        enable(["calculator", "calculator"])


@NEEDS_BOX
def test_the_python_tool_takes_the_operators_limits() -> None:
    [python] = enable(["python:timeout=2,memory_mb=256"]).values()
    assert isinstance(python, PythonTool)
    assert python.limits.wall_seconds == 2 and python.limits.memory_mb == 256
