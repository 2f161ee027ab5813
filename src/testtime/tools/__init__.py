"""Tools a strategy may call: the code sandbox, a calculator, callables a user registers."""

from testtime.tools.base import Tool, ToolEnv, ToolResult
from testtime.tools.calculator import Calculator, CalculatorError, evaluate
from testtime.tools.function import FunctionTool
from testtime.tools.python import PythonSettings, PythonTool
from testtime.tools.registry import ToolRegistry, enable, load, register_tool, tools

__all__ = [
    "Calculator",
    "CalculatorError",
    "FunctionTool",
    "PythonSettings",
    "PythonTool",
    "Tool",
    "ToolEnv",
    "ToolRegistry",
    "ToolResult",
    "enable",
    "evaluate",
    "load",
    "register_tool",
    "tools",
]
