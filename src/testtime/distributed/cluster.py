"""Connecting to Ray: an existing cluster by address, or a local one bound to 127.0.0.1 only."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

LOOPBACK = "127.0.0.1"


class RayClusterError(ValueError):
    """Ray is not installed, or the cluster cannot be started or reached."""


def import_ray() -> Any:
    """The ``ray`` module, or a clear error naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise RayClusterError(
            "sweeps on Ray need the 'ray' extra: pip install 'testtime[ray]'") from None
    return ray


SERVE_PATIENCE = {"RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "30"}
"""Environment a local cluster starts with: Serve's HTTP proxy may take longer than Ray's 5 s
per readiness check (three misses restart it and fail ``serve.start``) to start on a busy
machine with few cores. Read by Serve's controller, so it must be set before the cluster
starts; a cluster that testtime only connects to keeps its own settings."""


def forwarded_env() -> dict[str, str]:
    """Environment variables every worker must share with the driver (model cache, threads)."""
    return {k: v for k, v in os.environ.items() if k.startswith("TESTTIME_")}


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast, with a clear error, when nothing listens at a ``HOST:PORT`` Ray address.

    Ray itself retries an unreachable address for minutes. ``auto`` and other addresses
    without a port are left to Ray.
    """
    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        with socket.create_connection((host.strip("[]") or LOOPBACK, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise RayClusterError(f"cannot reach Ray at {address!r}: {exc}") from None


@contextmanager
def ray_session(address: str | None = None, *, num_cpus: int | None = None,
                num_gpus: int | None = None) -> Iterator[Any]:
    """Use the Ray connection already open, join the cluster at ``address``, or start a local one.

    A local cluster (``address`` None or ``"local"``) binds every service to 127.0.0.1 and runs
    no dashboard; it is shut down on exit. (Ray reads ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` at
    import and then resolves every address it detects to loopback.) A connection this function
    did not open is left open.
    """
    local = address in (None, "", "local")
    if local and "ray" not in sys.modules:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if local:
        os.environ.update({k: v for k, v in SERVE_PATIENCE.items() if k not in os.environ})
    options: dict[str, Any] = {"runtime_env": {"env_vars": forwarded_env()},
                               "include_dashboard": False, "logging_level": "warning",
                               "log_to_driver": False}
    if local:
        options.update(address="local", num_cpus=num_cpus or os.cpu_count() or 1,
                       num_gpus=num_gpus, _node_ip_address=LOOPBACK)
    else:
        check_reachable(str(address))
        options.update(address=address)
    try:
        ray.init(**options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = "a local Ray cluster" if options["address"] == "local" else f"Ray at {address!r}"
        raise RayClusterError(f"cannot start or reach {where}: {exc}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def node_addresses() -> list[str]:
    """The IP address of every live node of the connected cluster."""
    ray = import_ray()
    return sorted({str(n["NodeManagerAddress"]) for n in ray.nodes() if n.get("Alive")})
