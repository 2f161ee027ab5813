"""The ``calculator`` tool: exact arithmetic on one expression, never Python's ``eval``.

The expression is parsed with :mod:`ast` and only numbers, ``+ - * / // % **`` (``^`` is read
as ``**``), unary signs, parentheses, the constants ``pi`` and ``e`` and a few functions
(``sqrt``, ``abs``, ``round``, ``min``, ``max``, ``floor``, ``ceil``, ``log``, ``exp``) are
evaluated; any other node (a name, an attribute, a call of anything else, a subscript, a
string) is refused. Sums, products and quotients are exact (fractions), so ``0.1 + 0.2`` is
``0.3`` and ``7 / 2`` is ``3.5``. Sizes are bounded: the expression's length and node count,
exponents (``|b| <= 1000``) and every intermediate value's digits, so ``9**9**9`` is refused
at once instead of filling memory.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from testtime.tools.base import Tool, ToolEnv, ToolResult

MAX_CHARS = 500
MAX_NODES = 200
MAX_EXPONENT = 1000
MAX_DIGITS = 1000

Number = Fraction | float


class CalculatorError(ValueError):
    """An expression the calculator refuses or cannot evaluate."""


def _too_big(value: Number) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    return max(abs(value.numerator), value.denominator).bit_length() > MAX_DIGITS * 3.33


def _checked(value: Number) -> Number:
    if _too_big(value):
        raise CalculatorError(f"a value has more than {MAX_DIGITS} digits or is not finite")
    return value


def _power(base: Number, exp: Number) -> Number:
    if isinstance(exp, Fraction) and exp.denominator == 1:
        if abs(exp) > MAX_EXPONENT:
            raise CalculatorError(f"exponents are limited to {MAX_EXPONENT}")
        if base == 0 and exp < 0:
            raise CalculatorError("division by zero")
        if isinstance(base, Fraction):
            size = max(abs(base.numerator), base.denominator).bit_length()
            if size * abs(int(exp)) > MAX_DIGITS * 3.33:
                raise CalculatorError(f"the result would have more than {MAX_DIGITS} digits")
        return _checked(base ** int(exp))
    result = float(base) ** float(exp)
    if isinstance(result, complex):
        raise CalculatorError("the result is not a real number")
    return _checked(result)


def _divide(a: Number, b: Number) -> Number:
    if b == 0:
        raise CalculatorError("division by zero")
    return a / b


def _floordiv(a: Number, b: Number) -> Number:
    if b == 0:
        raise CalculatorError("division by zero")
    return Fraction(math.floor(a / b))


def _mod(a: Number, b: Number) -> Number:
    if b == 0:
        raise CalculatorError("modulo by zero")
    return a % b


_BINARY: dict[type[ast.operator], Callable[[Number, Number], Number]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: _divide, ast.FloorDiv: _floordiv, ast.Mod: _mod, ast.Pow: _power,
}


def _real(fn: Callable[[float], float]) -> Callable[..., Number]:
    def call(x: Number) -> Number:
        try:
            return fn(float(x))
        except (ValueError, OverflowError) as exc:
            raise CalculatorError(f"{fn.__name__}: {exc}") from None
    return call


def _round(x: Number, digits: Number = Fraction(0)) -> Number:
    if not (isinstance(digits, Fraction) and digits.denominator == 1 and 0 <= digits <= 30):
        raise CalculatorError("round takes a whole number of digits from 0 to 30")
    if isinstance(x, float):
        return round(x, int(digits))
    return Fraction(round(x, int(digits)))


FUNCTIONS: dict[str, Callable[..., Number]] = {
    "sqrt": _real(math.sqrt), "log": _real(math.log), "exp": _real(math.exp),
    "abs": abs, "round": _round, "min": min, "max": max,
    "floor": lambda x: Fraction(math.floor(x)), "ceil": lambda x: Fraction(math.ceil(x)),
}
CONSTANTS: dict[str, Number] = {"pi": math.pi, "e": math.e}


def _eval(node: ast.AST) -> Number:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return _checked(Fraction(node.value))
    if isinstance(node, ast.Constant) and type(node.value) is float:
        return _checked(Fraction(Decimal(repr(node.value))))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
        value = _eval(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        try:
            return _checked(_BINARY[type(node.op)](left, right))
        except OverflowError:
            raise CalculatorError("the result is too large") from None
    if isinstance(node, ast.Name) and node.id in CONSTANTS:
        return CONSTANTS[node.id]
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id in FUNCTIONS and not node.keywords and node.args):
        args = [_eval(a) for a in node.args]
        try:
            return _checked(FUNCTIONS[node.func.id](*args))
        except TypeError:
            raise CalculatorError(f"{node.func.id} got {len(args)} argument(s)") from None
    what = type(node).__name__
    if isinstance(node, ast.Name):
        what = f"the name {node.id!r}"
    elif isinstance(node, ast.Constant):
        what = f"the value {node.value!r}"
    elif isinstance(node, ast.Call):
        what = "a call of anything but " + ", ".join(FUNCTIONS)
    raise CalculatorError(f"only arithmetic is allowed, not {what}")


def evaluate(expression: str) -> Number:
    """The value of an arithmetic ``expression``; CalculatorError if it is not one."""
    text = expression.strip().replace("^", "**").replace("×", "*").replace("÷", "/")
    if not text:
        raise CalculatorError("the expression is empty")
    if len(text) > MAX_CHARS:
        raise CalculatorError(f"expressions are limited to {MAX_CHARS} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise CalculatorError(f"not an expression: {exc.msg}") from None
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
        raise CalculatorError(f"expressions are limited to {MAX_NODES} parts")
    try:
        return _eval(tree)
    except (OverflowError, ValueError, ArithmeticError) as exc:
        if isinstance(exc, CalculatorError):
            raise
        raise CalculatorError(f"cannot evaluate: {exc}") from None


def formatted(value: Number) -> str:
    """A value as text: a whole number without a point, else a decimal of up to 12 places."""
    if isinstance(value, Fraction):
        if value.denominator == 1:
            return str(value.numerator)
        text = f"{Decimal(value.numerator) / Decimal(value.denominator):.12f}"
        return text.rstrip("0").rstrip(".")
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.12g}"


class CalculatorArguments(BaseModel):
    """The calculator's one argument."""

    model_config = ConfigDict(extra="forbid")

    expression: Annotated[str, Field(description="an arithmetic expression, e.g. "
                                                 "(14 * 3 - 5) / 2")]


class Calculator(Tool):
    """Exact arithmetic on one expression (numbers, + - * / // % ** and parentheses)."""

    name = "calculator"
    description = ("Evaluate an arithmetic expression exactly: numbers, + - * / // % ** and "
                   "parentheses; sqrt, abs, round, min, max, floor, ceil, log, exp; pi, e.")
    Arguments = CalculatorArguments

    async def invoke(self, args: Any, env: ToolEnv) -> ToolResult:
        """Evaluate the expression (it is small and bounded, so in the event loop)."""
        try:
            value = formatted(evaluate(args.expression))
        except CalculatorError as exc:
            return ToolResult.error(str(exc))
        return ToolResult(ok=True, output=value, value=value)
