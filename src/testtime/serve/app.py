"""The app factory: config + backend in, a FastAPI app with every layer wired out."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from testtime.backends.base import Backend, BackendError, make_backend
from testtime.policy import PolicyError
from testtime.serve import logs
from testtime.serve.api import router
from testtime.serve.config import ConfigError, ServeConfig
from testtime.serve.errors import ApiError, install_handlers
from testtime.serve.gateway import Gateway
from testtime.serve.metrics import Metrics
from testtime.serve.middleware import GatewayMiddleware
from testtime.serve.protection import GuardFactory, KeyGuard
from testtime.serve.routing import Router

log = logging.getLogger("testtime.serve")


def upstream_name(config: ServeConfig, backend: Backend) -> str:
    """The model id clients use: configured, else the backend's model, else its name."""
    if config.model_name:
        return config.model_name
    model = getattr(getattr(backend, "settings", None), "model", None)
    if isinstance(model, str) and model:
        return Path(model).stem if model.endswith(".gguf") else model
    return backend.name


def create_app(config: ServeConfig, backend: Backend | None = None, *,
               metrics: Metrics | None = None, guard: GuardFactory = KeyGuard) -> FastAPI:
    """Build the gateway app; a given ``backend`` is used as is and not closed on shutdown.

    ``metrics`` and ``guard`` replace this process's own counts (see ``Gateway``)."""
    owned = backend is None
    engine = backend if backend is not None else make_backend(config.backend)
    try:
        routes = Router(config, upstream_name(config, engine))
    except ApiError as exc:
        raise ConfigError(f"invalid strategy in config: {exc.message}") from None
    except PolicyError as exc:
        raise ConfigError(f"invalid policy in config: {exc}") from None
    gw = Gateway(config, engine, routes, metrics=metrics, guard=guard)
    logs.configure(config.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await engine.ready()
            app.state.upstream_ready = True
            ask = getattr(engine, "model_name", None)
            if config.model_name is None and callable(ask):
                routes.upstream_model = str(await ask())
        except BackendError as exc:
            log.warning("upstream not ready; requests will get 502 until it is",
                        extra={"error": str(exc)})
        log.info("serving", extra={"backend": engine.name, "model": routes.upstream_model,
                                   "default_strategy": config.default_strategy,
                                   "keys": len(config.api_keys)})
        try:
            yield
        finally:
            if owned:
                await engine.close()

    app = FastAPI(title="testtime gateway", version="0.1.0", lifespan=lifespan,
                  description="OpenAI-compatible API answering with test-time scaling "
                  "strategies.")
    app.state.gateway = gw
    app.state.upstream_ready = False
    install_handlers(app)
    app.include_router(router)
    app.add_middleware(GatewayMiddleware, max_body=config.max_body_bytes, metrics=gw.metrics)
    return app
