"""The sweep result store: one SQLite row per (problem, configuration), written at most once.

SQLite in WAL mode with one transaction per row: a process killed at any moment leaves every
committed row intact and no half-written one, so a rerun skips exactly what is done.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from testtime.eval.units import Unit

SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    key TEXT PRIMARY KEY,
    task TEXT NOT NULL,
    problem_id TEXT NOT NULL,
    strategy TEXT NOT NULL,
    budget TEXT,
    seed INTEGER NOT NULL,
    backend TEXT NOT NULL,
    verifier TEXT,
    status TEXT NOT NULL,
    error TEXT,
    record TEXT NOT NULL,
    written REAL NOT NULL
)
"""
TRACES = """
CREATE TABLE IF NOT EXISTS traces (
    key TEXT PRIMARY KEY,
    completions TEXT NOT NULL
)
"""
"""Each kept unit's candidates as the engine returned them (tokens, logprobs, top logprobs):
apart from ``results``, so reports never read them and a copy can drop them."""
COLUMNS = ("key", "task", "problem_id", "strategy", "budget", "seed", "backend", "verifier",
           "status", "error")


class StoreError(ValueError):
    """The store file cannot be opened or read as a testtime result store."""


class ResultStore:
    """Sweep results in SQLite; ``put`` is idempotent on the unit key. With ``create=False``
    an existing store is opened read-only: reports and fits never change the file."""

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.path = Path(path).expanduser()
        if not create and not self.path.is_file():
            raise StoreError(f"result store {str(self.path)!r} does not exist")
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            if create:
                self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30.0)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.execute(SCHEMA)
                self._db.execute(TRACES)
                self._db.commit()
            else:
                self._db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True,
                                           check_same_thread=False, timeout=30.0)
            self._check_schema()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{str(self.path)!r} is not a usable result store: {exc}") from None

    def _check_schema(self) -> None:
        cols = {row[1] for row in self._db.execute("PRAGMA table_info(results)")}
        missing = set(COLUMNS) - cols
        if missing:
            raise StoreError(f"{str(self.path)!r} has a 'results' table without columns "
                             f"{sorted(missing)}; not a testtime result store")

    def done_keys(self) -> set[str]:
        """Keys of units recorded successfully (errored units are retried on a rerun)."""
        with self._lock:
            rows = self._db.execute("SELECT key FROM results WHERE status = 'ok'").fetchall()
        return {r[0] for r in rows}

    def put(self, unit: Unit, record: dict[str, Any], *, status: str = "ok",
            error: str | None = None) -> bool:
        """Write one unit's record unless its key is already recorded; True if a row changed.

        An ``ok`` record replaces an earlier error row for the same key; nothing else is ever
        overwritten.
        """
        record = dict(record)
        traces = record.pop("traces", None)
        values = (unit.key, unit.task, unit.problem.id, unit.strategy, unit.budget, unit.seed,
                  unit.backend, unit.verifier, status, error,
                  json.dumps(record, ensure_ascii=False, default=str), time.time())
        with self._lock:
            try:
                cur = self._db.execute(
                    f"INSERT OR IGNORE INTO results ({', '.join(COLUMNS)}, record, written) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", values)
                written = cur.rowcount > 0
                if not written and status == "ok":
                    cur = self._db.execute(
                        "UPDATE results SET status = 'ok', error = NULL, record = ?, written = ?"
                        " WHERE key = ? AND status != 'ok'", (values[10], values[11], unit.key))
                    written = cur.rowcount > 0
                if written and traces is not None:
                    self._db.execute("INSERT OR REPLACE INTO traces (key, completions) "
                                     "VALUES (?, ?)", (unit.key, json.dumps(traces)))
                self._db.commit()
            except sqlite3.DatabaseError as exc:
                self._db.rollback()
                raise StoreError(f"cannot write to {str(self.path)!r}: {exc}") from None
        return written

    def records(self, *, include_errors: bool = False) -> list[dict[str, Any]]:
        """Every stored record, with the unit's columns added under their own names."""
        query = f"SELECT {', '.join(COLUMNS)}, record FROM results"
        if not include_errors:
            query += " WHERE status = 'ok'"
        with self._lock:
            try:
                rows = self._db.execute(query + " ORDER BY rowid").fetchall()
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"cannot read {str(self.path)!r}: {exc}") from None
        out = []
        for row in rows:
            try:
                rec = json.loads(row[-1])
            except json.JSONDecodeError:
                raise StoreError(f"row {row[0]!r} of {str(self.path)!r} holds invalid JSON")\
                    from None
            rec.update(dict(zip(COLUMNS, row[:-1], strict=True)))
            out.append(rec)
        return out

    def traces(self) -> dict[str, list[dict[str, Any]]]:
        """Per unit key, the completions kept for it (a sweep with ``keep_logprobs``)."""
        with self._lock:
            try:
                rows = self._db.execute("SELECT key, completions FROM traces").fetchall()
            except sqlite3.OperationalError:
                return {}
        return {key: json.loads(blob) for key, blob in rows}

    def counts(self) -> dict[str, int]:
        """Rows per status."""
        with self._lock:
            rows = self._db.execute("SELECT status, COUNT(*) FROM results GROUP BY status")
            return {status: n for status, n in rows.fetchall()}

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
