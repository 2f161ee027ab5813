"""CLI commands of the distributed layer, added to the main `testtime` app."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this layer's commands to app."""
