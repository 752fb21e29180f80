"""Primitives the SQLite store's modules share: time in integer microseconds, transactions, parameters."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from cmo_server.domain import ActivityRecord, Namespace, TaskKey
from cmo_server.store._rows import ON_RECORD_CONFLICT, activity_params, fence

__all__ = ["FENCE", "INSERT_ACTIVITY", "Transaction", "activity_row", "dt", "fence", "now_us", "run_key", "us"]

# Every worker write names the attempt it holds and the worker holding its lease; a newer attempt,
# a finished step or another worker matches no row.
FENCE = """namespace = :namespace AND run_id = :run_id AND step_index = :step_index AND attempt = :attempt
       AND lease_owner = :worker_id"""

INSERT_ACTIVITY = f"""
    INSERT INTO activities (namespace, run_id, step_index, seq, kind, name, request_hash, result, error, attempt,
                            recorded_at)
    VALUES (:namespace, :run_id, :step_index, :seq, :kind, :name, :request_hash, :result, :error, :attempt, :now)
    {ON_RECORD_CONFLICT}
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


def run_key(namespace: Namespace, run_id: str) -> dict[str, Any]:
    """The named parameters that name a run."""
    return {"namespace": str(namespace), "run_id": run_id}


def activity_row(key: TaskKey, activity: ActivityRecord) -> dict[str, Any]:
    """The named parameters of INSERT_ACTIVITY for a record of the step `key` names, all but `now`."""
    return activity_params(key.namespace, key.run_id, key.step_index, activity)
