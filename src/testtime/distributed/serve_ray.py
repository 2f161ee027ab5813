"""The gateway as a Ray Serve application: gateway replicas (HTTP) over engine replicas.

Every gateway replica builds the same FastAPI app as ``testtime serve`` (``create_app``) from
the same config; its backend is a ``RemoteBackend`` over the engine deployment, its key guard
and metrics are the shared ones of ``serve_shared``. ``deploy`` starts it all on the connected
cluster; ``run_gateway`` is ``testtime serve --ray``.
"""

from __future__ import annotations

import signal
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

from testtime.distributed.cluster import ray_session
from testtime.distributed.serve_engine import EngineReplica, RemoteBackend
from testtime.distributed.serve_shared import KeyCounts, MetricsHub, SharedKeyGuard, SharedMetrics
from testtime.serve.config import ReplicaConfig, ServeConfig
from testtime.serve.gateway import CANCEL_GRACE

APP = "testtime"
LEASE_SLACK = 60.0  # seconds past the request timeout after which a lost lease is released


class GatewayReplica:
    """One gateway replica: the FastAPI app of ``create_app`` over the engine replicas."""

    def __init__(self, config: ServeConfig, engine: Any, counts: Any, hub: Any) -> None:
        self.config = config
        self.engine = engine
        self.counts = counts
        self.hub = hub
        self.replica = uuid.uuid4().hex[:8]

    def __serve_build_asgi_app__(self) -> Any:
        """The gateway app this replica serves (Serve calls this after ``__init__``)."""
        from testtime.serve.app import create_app

        metrics = SharedMetrics(self.hub, self.replica)
        backend = RemoteBackend(self.engine, self.config.backend,
                                spread=self.config.ray.engine.most,
                                retries=self.config.ray.engine_retries,
                                on_lost=lambda: metrics.inc(
                                    "testtime_gateway_engine_calls_lost_total",
                                    "Engine calls lost with their replica (then retried)."))
        return create_app(self.config, backend, metrics=metrics,
                          guard=partial(SharedKeyGuard, counts=self.counts))


def scaling(replicas: ReplicaConfig) -> dict[str, Any]:
    """Serve deployment options for ``replicas``: count or autoscaling bounds, resources."""
    options: dict[str, Any] = {
        "ray_actor_options": {"num_cpus": replicas.num_cpus, "num_gpus": replicas.num_gpus},
        "max_ongoing_requests": replicas.max_ongoing_requests}
    if replicas.max_replicas is not None:
        options["autoscaling_config"] = {"min_replicas": replicas.min_replicas,
                                         "max_replicas": replicas.max_replicas,
                                         "initial_replicas": max(replicas.min_replicas or 0, 1)}
    else:
        options["num_replicas"] = replicas.num_replicas
    return options


@dataclass
class Deployed:
    """A running gateway application: its URL and the actors holding the shared counts."""

    url: str
    counts: Any
    hub: Any


@contextmanager
def deploy(config: ServeConfig) -> Iterator[Deployed]:
    """Run the gateway on the connected Ray cluster at ``config.host:config.port`` meanwhile.

    Serve's HTTP proxy runs on the head node only, bound to ``config.host``. On exit the
    application, Serve and the shared actors are stopped.
    """
    import ray
    from ray import serve

    lease_ttl = config.request_timeout + CANCEL_GRACE + LEASE_SLACK
    counts: Any = ray.remote(num_cpus=0)(KeyCounts).remote(config.keys(), lease_ttl)
    hub: Any = ray.remote(num_cpus=0)(MetricsHub).remote()
    try:
        serve.start(proxy_location="HeadOnly",
                    http_options={"host": config.host, "port": config.port})
        engine = serve.deployment(name="engine", **scaling(config.ray.engine))(
            EngineReplica).bind(config.backend)
        gateway = serve.deployment(name="gateway", **scaling(config.ray.gateway))(
            serve.ingress()(GatewayReplica))
        serve.run(gateway.bind(config, engine, counts, hub), name=APP, route_prefix="/")
        yield Deployed(f"http://{config.host}:{config.port}", counts, hub)
    finally:
        try:
            serve.shutdown()
        finally:
            ray.kill(counts)
            ray.kill(hub)


def run_gateway(config: ServeConfig, address: str | None) -> None:
    """``testtime serve --ray``: deploy on the cluster at ``address`` (None: a local one on
    127.0.0.1) and serve until SIGINT or SIGTERM."""
    stop = threading.Event()
    with ray_session(address, num_cpus=config.ray.num_cpus, num_gpus=config.ray.num_gpus), \
            deploy(config) as app:
        for sig in (signal.SIGINT, signal.SIGTERM):  # after ray.init, which sets its own
            signal.signal(sig, lambda *_: stop.set())
        print(f"serving on Ray at {app.url} ({config.ray.gateway.most} gateway, "
              f"{config.ray.engine.most} engine replicas); stop with SIGTERM or Ctrl-C",
              flush=True)
        stop.wait()
