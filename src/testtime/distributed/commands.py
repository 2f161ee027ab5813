"""CLI commands of the distributed layer, added to the main `testtime` app, and the Ray
executor behind ``testtime sweep --ray``."""

from __future__ import annotations

import typer

from testtime.distributed.ray_sweep import run_sweep_ray
from testtime.eval.store import ResultStore
from testtime.eval.sweep import SweepConfig, SweepReport
from testtime.serve.config import ServeConfig


def run_on_ray(config: SweepConfig, store: ResultStore, address: str | None) -> SweepReport:
    """Run a sweep on the Ray cluster at ``address`` (None: start a local one)."""
    return run_sweep_ray(config, store=store, address=address)


def serve_on_ray(config: ServeConfig, address: str | None) -> None:
    """Serve the gateway on the Ray cluster at ``address`` (None: start a local one)."""
    from testtime.distributed.serve_ray import run_gateway

    run_gateway(config, address)


def register(app: typer.Typer) -> None:
    """Add this layer's commands to app."""
