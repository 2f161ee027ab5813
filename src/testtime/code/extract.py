"""Pull candidate code out of a model's reply and complete a function from its prompt."""

from __future__ import annotations

import ast
import re

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)
_CODE_LANGS = ("", "python", "py", "python3")


def extract_code(text: str) -> str:
    """The last fenced Python block (an unclosed last fence counts), else the whole text."""
    blocks = [(lang.lower(), body) for lang, body in _FENCE.findall(text)]
    python = [body for lang, body in blocks if lang in _CODE_LANGS]
    if python:
        return python[-1].rstrip() + "\n"
    return text.strip("\n") + "\n"


def _defines(code: str, name: str) -> bool:
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return re.search(rf"^\s*def\s+{re.escape(name)}\s*\(", code, re.MULTILINE) is not None
    return any(isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name
               for node in ast.walk(tree))


def _parses(code: str) -> bool:
    try:
        compile(code, "<candidate>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError):
        return False
    return True


def complete_function(prompt: str, reply: str, entry_point: str) -> str:
    """A program defining ``entry_point``: the prompt completed by the code in ``reply``.

    A reply that defines the function itself replaces the prompt's stub (the prompt is kept
    first, so its imports and helper functions stay defined); a reply that is only the body
    is appended to the prompt, re-indented when the model dropped the indentation.
    """
    code = extract_code(reply)
    head = prompt if prompt.endswith("\n") else prompt + "\n"
    if _defines(code, entry_point):
        return f"{head}\n\n{code}"
    body = head + code
    if _parses(body):
        return body
    indented = head + "".join(f"    {line}" if line.strip() else line
                              for line in code.splitlines(keepends=True))
    return indented if _parses(indented) else body
