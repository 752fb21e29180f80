"""Primitives the SQLite store's modules share: time in integer microseconds, transactions."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from cmo_server.domain import TaskKey

__all__ = ["FENCE", "INSERT_ACTIVITY", "Transaction", "dt", "fence", "now_us", "us"]

# Every worker write names the attempt it holds and the worker holding its lease; a newer attempt,
# a finished step or another worker matches no row.
FENCE = "run_id = :run_id AND step_index = :step_index AND attempt = :attempt AND lease_owner = :worker_id"

INSERT_ACTIVITY = """
    INSERT INTO activities (run_id, step_index, seq, kind, name, request_hash, result, error, attempt, recorded_at)
    VALUES (:run_id, :step_index, :seq, :kind, :name, :request_hash, :result, :error, :attempt, :now)
    ON CONFLICT (run_id, step_index, seq) DO NOTHING
"""


def now_us() -> int:
    """Now, in microseconds since the epoch."""
    return time.time_ns() // 1000


def us(delta: timedelta) -> int:
    """A duration in microseconds."""
    return int(delta.total_seconds() * 1_000_000)


def dt(us: int) -> datetime:
    """Microseconds since the epoch as an aware UTC datetime."""
    return datetime.fromtimestamp(us / 1_000_000, UTC)


class Transaction:
    """BEGIN IMMEDIATE … COMMIT, rolled back on any error."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self._conn.execute("BEGIN IMMEDIATE")
        return self._conn

    def __exit__(self, exc_type: object, *_: object) -> None:
        self._conn.execute("ROLLBACK" if exc_type is not None else "COMMIT")


def fence(key: TaskKey) -> dict[str, Any]:
    """The named parameters of FENCE."""
    return {"run_id": key.run_id, "step_index": key.step_index, "attempt": key.attempt, "worker_id": key.worker_id}
