"""`testtime serve --ray [ADDRESS]`: the option reaches the Ray runner with the config."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from testtime.serve import commands
from testtime.serve.config import ServeConfig


def app_recording(calls: list[tuple[ServeConfig, str | None]]) -> typer.Typer:
    app = typer.Typer()
    commands.register(app, ray_serve=lambda cfg, address: calls.append((cfg, address)))

    @app.command("other")
    def other() -> None:
        """A second command, so `serve` is a subcommand."""

    return app


@pytest.mark.parametrize(("args", "address"), [
    (["--ray"], None), (["--ray", "local"], None), (["--ray", "auto"], "auto"),
    (["--ray", "--port", "9001"], None)])
def test_ray_option_runs_the_ray_gateway(tmp_path: Path, args: list[str],
                                         address: str | None) -> None:
    config = tmp_path / "gw.toml"
    config.write_text('[serve]\nbackend = "scripted:hi"\n[serve.ray.engine]\nnum_replicas = 3\n'
                      'num_gpus = 1\n[serve.ray.gateway]\nmin_replicas = 1\nmax_replicas = 4\n')
    calls: list[tuple[ServeConfig, str | None]] = []
    result = CliRunner().invoke(app_recording(calls), ["serve", "--config", str(config), *args])
    assert result.exit_code == 0, result.output
    [(cfg, got)] = calls
    assert got == address
    assert cfg.ray.engine.num_replicas == 3 and cfg.ray.engine.num_gpus == 1
    assert cfg.ray.gateway.most == 4


def test_bad_replica_bounds_are_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "gw.toml"
    config.write_text('[serve.ray.engine]\nmin_replicas = 3\nmax_replicas = 2\n')
    calls: list[tuple[ServeConfig, str | None]] = []
    result = CliRunner().invoke(app_recording(calls), ["serve", "--config", str(config),
                                                       "--ray"])
    assert result.exit_code != 0 and "min_replicas" in result.output and not calls


def test_replica_config_becomes_serve_options() -> None:
    from testtime.distributed.serve_ray import scaling
    from testtime.serve.config import ReplicaConfig

    fixed = scaling(ReplicaConfig(num_replicas=3, num_cpus=2, num_gpus=1,
                                  max_ongoing_requests=8))
    assert fixed == {"num_replicas": 3, "max_ongoing_requests": 8,
                     "ray_actor_options": {"num_cpus": 2, "num_gpus": 1}}
    auto = scaling(ReplicaConfig(min_replicas=0, max_replicas=5))
    assert auto["autoscaling_config"] == {"min_replicas": 0, "max_replicas": 5,
                                          "initial_replicas": 1}
    assert "num_replicas" not in auto
