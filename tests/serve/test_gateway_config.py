"""Config file, environment variables and overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from testtime.serve.config import ConfigError, load_config


def test_file_then_env_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text('[serve]\nport = 9000\ndefault_strategy = "self-consistency:n=4"\n'
                    'max_concurrency = 3\n[serve.api_keys.k1]\nbudget_tokens = 500\n'
                    '[serve.strategies]\nsc4 = "self-consistency:n=4"\n')
    env = {"TESTTIME_SERVE_PORT": "9100", "TESTTIME_API_KEYS": "k2, k3",
           "TESTTIME_SERVE_ALLOWED_STRATEGIES": '["single", "self-consistency"]'}
    cfg = load_config(path, env=env, port=9200)
    assert cfg.port == 9200
    assert cfg.default_strategy == "self-consistency:n=4"
    assert cfg.max_concurrency == 3
    assert cfg.strategies == {"sc4": "self-consistency:n=4"}
    assert cfg.allowed_strategies == ["single", "self-consistency"]
    assert set(cfg.api_keys) == {"k1", "k2", "k3"}
    assert cfg.api_keys["k1"].budget_tokens == 500
    assert load_config(path, env=env).port == 9100


def test_json_config_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "gw.json"
    path.write_text('{"request_budget": "tokens=100,calls=4"}')
    cfg = load_config(path, env={})
    assert cfg.budget().generated_tokens == 100 and cfg.budget().calls == 4
    path.write_text('{"request_budget": "bogus=1"}')
    with pytest.raises(ConfigError, match="request_budget"):
        load_config(path, env={})
    with pytest.raises(ConfigError, match="max_concurrency"):
        load_config(None, env={"TESTTIME_SERVE_MAX_CONCURRENCY": "zero"})
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml", env={})
    (tmp_path / "bad.toml").write_text("port = [")
    with pytest.raises(ConfigError, match="not valid"):
        load_config(tmp_path / "bad.toml", env={})


def test_security_settings_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text('[serve]\nallowed_verifiers = ["confidence"]\n'
                    '[serve.client_limits]\nn = 8\n"beam.width" = { min = 1, max = 4 }\n'
                    '[serve.key_defaults]\nrpm = 60\ntpm = 5000\n'
                    '[serve.api_keys.k1]\nname = "one"\nrpm = 10\nconcurrency = 2\n')
    cfg = load_config(path, env={"TESTTIME_API_KEYS": "k2"})
    keys = cfg.keys()
    assert (keys["k1"].rpm, keys["k1"].tpm, keys["k1"].concurrency) == (10, 5000, 2)
    assert (keys["k2"].rpm, keys["k2"].tpm, keys["k2"].concurrency) == (60, 5000, None)
    policy = cfg.client_rules()
    assert policy.allowed["verifier"] == ["confidence"]
    assert policy.bound("self-consistency", "n") is not None
    assert str(policy.bound("beam", "width")) == "between 1 and 4"
    assert policy.bound("dvts", "width") is None
    for bad in ('[serve.client_limits]\nn = "many"\n',
                '[serve.client_limits]\nn = { min = 4, max = 2 }\n',
                '[serve]\nallowed_verifiers = ["judge", "nope"]\n'):
        path.write_text(bad)
        with pytest.raises(ConfigError, match=r"client_limits|nope"):
            load_config(path, env={})
