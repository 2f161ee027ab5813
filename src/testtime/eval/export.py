"""Flatten stored records into one row each and write them as CSV or Parquet."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

USAGE_FIELDS = ("prompt_tokens", "cached_tokens", "generated_tokens", "verifier_tokens",
                "calls", "verifier_calls", "seconds", "flops", "memory_bytes")


def flat_row(rec: dict[str, Any]) -> dict[str, Any]:
    """One table row: configuration, outcome, usage columns and candidates as JSON text."""
    cands = rec.get("candidates") or []
    usage = rec.get("usage") or {}
    row: dict[str, Any] = {
        "key": rec.get("key"), "task": rec.get("task"), "problem_id": rec.get("problem_id"),
        "strategy": rec.get("strategy"), "budget": rec.get("budget"), "seed": rec.get("seed"),
        "backend": rec.get("backend"), "verifier": rec.get("verifier"),
        "status": rec.get("status", "ok"), "error": rec.get("error"),
        "reference": rec.get("reference"), "answer": rec.get("answer"),
        "correct": rec.get("correct"), "n_candidates": len(cands),
        "n_correct": sum(1 for c in cands if c.get("correct")),
        "budget_exhausted": rec.get("budget_exhausted"),
    }
    row.update({f"usage_{k}": usage.get(k, 0) for k in USAGE_FIELDS})
    row["metadata"] = json.dumps(rec.get("metadata") or {}, ensure_ascii=False)
    row["candidates"] = json.dumps(cands, ensure_ascii=False)
    return row


def export(records: Sequence[dict[str, Any]], out: Path) -> int:
    """Write records to ``out`` (.csv or .parquet); returns the number of rows."""
    rows = [flat_row(r) for r in records]
    if out.suffix == ".csv":
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", newline="", encoding="utf-8") as f:
            names = list(rows[0]) if rows else ["key"]
            writer = csv.DictWriter(f, fieldnames=names)
            writer.writeheader()
            writer.writerows(rows)
    elif out.suffix == ".parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise ValueError("Parquet export needs pyarrow: pip install 'testtime[eval]'")\
                from None
        out.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows), out)
    else:
        raise ValueError(f"export to {out.name!r}: use a .csv or .parquet file name")
    return len(rows)
