"""A two-node Ray cluster on 127.0.0.1 only, shared by the distributed tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

# Read by Ray at import: every address Ray detects by itself is then the loopback one.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Serve's proxy spreads requests over every gateway replica, not only those on its node.
os.environ.setdefault("RAY_SERVE_PROXY_PREFER_LOCAL_NODE_ROUTING", "0")
os.environ.setdefault("TESTTIME_CACHE", "/tmp/ttcache")

ray = pytest.importorskip("ray")

from testtime.distributed.cluster import SERVE_PATIENCE  # noqa: E402


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    """Two Ray nodes (one CPU each) with every service on 127.0.0.1, and a driver connected."""
    from ray.cluster_utils import Cluster

    os.environ.update({k: v for k, v in SERVE_PATIENCE.items() if k not in os.environ})
    node = {"num_cpus": 1, "node_ip_address": "127.0.0.1", "include_dashboard": False}
    cluster = Cluster(initialize_head=True, head_node_args=node)
    cluster.add_node(**{k: v for k, v in node.items() if k != "include_dashboard"})
    ray.init(address=cluster.address, logging_level="warning", log_to_driver=False,
             runtime_env={"env_vars": {"TESTTIME_CACHE": os.environ["TESTTIME_CACHE"]}})
    cluster.wait_for_nodes()
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "ci: a slow check that CI runs all the same")
