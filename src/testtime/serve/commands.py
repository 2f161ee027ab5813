"""CLI commands of the serve layer, added to the main `testtime` app."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from testtime.cli_errors import USER_ERRORS, fail


def register(app: typer.Typer) -> None:
    """Add this layer's commands to app."""

    @app.command("serve")
    def serve(
        config: Annotated[Path | None, typer.Option(help="TOML or JSON config file")] = None,
        host: Annotated[str | None, typer.Option(help="bind address")] = None,
        port: Annotated[int | None, typer.Option(help="port (0: any free port)")] = None,
        backend: Annotated[str | None, typer.Option(
            help="upstream: embedded:PACK or openai:URL")] = None,
        strategy: Annotated[str | None, typer.Option(
            "--strategy", help="default strategy spec")] = None,
        api_key: Annotated[list[str] | None, typer.Option(
            help="accepted bearer key (repeatable); also TESTTIME_API_KEYS")] = None,
    ) -> None:
        """Serve an OpenAI-compatible API that answers with test-time scaling strategies."""
        import uvicorn

        from testtime.serve.app import create_app
        from testtime.serve.config import load_config

        try:
            cfg = load_config(config, host=host, port=port, backend=backend,
                              default_strategy=strategy)
            if api_key:
                keys: dict[str, dict[str, object]] = {k: {} for k in api_key}
                given = cfg.model_dump(exclude_unset=True)
                cfg = cfg.model_validate({**given, "api_keys": {
                    **keys, **given.get("api_keys", {})}})
            app = create_app(cfg)
        except USER_ERRORS as exc:
            fail(str(exc))
        uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="warning", access_log=False,
                    timeout_graceful_shutdown=5)
