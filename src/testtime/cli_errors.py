"""How every ``testtime`` command reports a user error: one red line on stderr, no traceback."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from testtime.backends.base import BackendError
from testtime.models import ModelError
from testtime.registry import SpecError
from testtime.tasks.base import TaskError

err = Console(stderr=True)
USER_ERRORS = (SpecError, ModelError, TaskError, BackendError, ValueError, OSError)
"""Errors a user can fix (a bad spec, a missing model, a bad file): reported, not raised."""


def fail(message: str, code: int = 2) -> NoReturn:
    """Print a one-line error and exit non-zero (no traceback for user errors)."""
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)
