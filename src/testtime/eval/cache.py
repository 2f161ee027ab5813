"""JSON caches that long benches resume from: a write is whole or not at all."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def load_json(path: Path) -> dict[str, Any]:
    """A JSON cache (empty when absent)."""
    data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    return data


def save_json(path: Path, data: dict[str, Any]) -> None:
    """Write a JSON cache, creating its folder: written beside it first, then moved into
    place, so a run killed mid-write leaves the previous cache intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data))
    os.replace(partial, path)
