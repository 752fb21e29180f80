"""Row -> value object conversions both SQL backends share (their SELECTs list the same columns)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from cmo_server.domain import Failure, Run, RunStatus

__all__ = ["run_from_row"]


def run_from_row(row: Sequence[Any], to_datetime: Callable[[Any], datetime]) -> Run:
    """A run from a row of its 13 columns, timestamps converted by `to_datetime`.

    The columns: run_id, graph_id, graph_version, status, input, seed, step_count, current_node,
    created_at, updated_at, completed_at, result, failure.
    """
    return Run(
        run_id=row[0],
        graph_id=row[1],
        graph_version=row[2],
        status=RunStatus(row[3]),
        input=row[4],
        seed=row[5],
        step_count=row[6],
        current_node=row[7],
        created_at=to_datetime(row[8]),
        updated_at=to_datetime(row[9]),
        completed_at=None if row[10] is None else to_datetime(row[10]),
        result=row[11],
        failure=None if row[12] is None else Failure.from_json(json.loads(row[12])),
    )
