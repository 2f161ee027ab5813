"""The benches' JSON caches: a round trip, and a run killed mid-write keeps the previous
cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from testtime.eval import cache
from testtime.eval.cache import load_json, save_json


def test_a_cache_round_trips_and_leaves_nothing_beside_it(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "pool.json"
    assert load_json(path) == {}
    save_json(path, {"key": "k", "pools": {"p": [1, 2]}})
    assert load_json(path) == {"key": "k", "pools": {"p": [1, 2]}}
    assert [p.name for p in path.parent.iterdir()] == ["pool.json"]


def test_a_write_cut_short_keeps_the_previous_cache(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "pool.json"
    save_json(path, {"done": 3})

    def killed(src: object, dst: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cache.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        save_json(path, {"done": 4})
    assert load_json(path) == {"done": 3}
