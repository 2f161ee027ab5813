"""CLI commands of the serve layer, added to the main `testtime` app."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperCommand

from testtime.cli_errors import USER_ERRORS, fail

if TYPE_CHECKING:
    from testtime.serve.config import ServeConfig

RayServe = Callable[["ServeConfig", "str | None"], None]


class _OptionalRayAddress(TyperCommand):
    """Lets ``--ray`` stand alone: a bare ``--ray`` means a local Ray cluster."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        """Insert ``local`` after a ``--ray`` not followed by an address."""
        out = list(args)
        for i, a in enumerate(out):
            nxt = out[i + 1] if i + 1 < len(out) else None
            if a == "--ray" and (nxt is None or nxt.startswith("-")):
                out.insert(i + 1, "local")
                break
        return super().parse_args(ctx, out)


def register(app: typer.Typer, ray_serve: RayServe | None = None) -> None:
    """Add this layer's commands to app; ``ray_serve`` runs ``serve --ray`` (absent: not
    offered)."""

    @app.command("serve", cls=_OptionalRayAddress)
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
        ray: Annotated[str | None, typer.Option(
            "--ray", help="serve on Ray Serve (replicas from the config's [serve.ray]); "
            "optional cluster ADDRESS ('local' starts one here)", metavar="[ADDRESS]")] = None,
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
            if ray is not None:
                if ray_serve is None:
                    fail("--ray needs the Ray executor (testtime.distributed)")
                ray_serve(cfg, None if ray == "local" else ray)
                return
            app = create_app(cfg)
        except ImportError as exc:
            fail(f"--ray needs ray[serve] installed (pip install 'testtime[ray]'): {exc}")
        except USER_ERRORS as exc:
            fail(str(exc))
        uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="warning", access_log=False,
                    timeout_graceful_shutdown=5)
