"""The explanation of one unfinished run, from its task row and the pollers of its queue (pure)."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cmo_server.domain import Failure, Run
from cmo_server.progress._pollers import Poller
from cmo_server.progress._store import TaskSnapshot

__all__ = ["Progress", "ProgressReason", "explain"]

SPECIALIST_REPLY = "a2a."
"""The signal names a step waiting for a specialist's reply waits on (`a2a.<message id>`)."""


class ProgressReason(enum.IntEnum):
    """The proto's RunProgress.Reason, by number."""

    NO_POLLER = 1
    READY = 2
    LEASED = 3
    RETRY_AT = 4
    SIGNAL = 5
    TIMER = 6
    SPECIALIST = 7
    CANCEL_REQUESTED = 8


@dataclass(frozen=True, slots=True)
class Progress:
    """What an unfinished run waits for (the proto's RunProgress)."""

    reason: ProgressReason
    summary: str
    task_queue: str = ""
    step_index: int = 0
    attempt: int = 0
    worker_id: str = ""
    until: datetime | None = None
    last_poll: datetime | None = None
    last_failure: Failure | None = None
    signal_name: str = ""
    pollers: int = 0
    agent_id: str = ""


def explain(run: Run, task: TaskSnapshot | None, pollers: Sequence[Poller], *, recent: timedelta) -> Progress | None:
    """Why `run` (unfinished, with its task row) is where it is; None for an ended run.

    `pollers` are those seen polling the task's queue for its graph version; one seen within
    `recent` counts as polling now.
    """
    if run.status.terminal or task is None:
        return None
    now = task.now
    step = f"step {task.step_index} ({task.node_id})"
    leased = task.lease_owner is not None and task.visible_at is not None and task.visible_at > now
    if run.cancel_requested:
        holder = f" (its worker {task.lease_owner} is told at its next heartbeat)" if leased else ""
        return _at(
            task,
            ProgressReason.CANCEL_REQUESTED,
            f"cancel requested: the run ends CANCELLED once {step} winds up{holder}",
            worker_id=(task.lease_owner or "") if leased else "",
        )
    if task.wait_kind == "timer":
        return _at(
            task,
            ProgressReason.TIMER,
            f"{step} waits for a timer that fires {_when(task.wait_until, now)}",
            until=task.wait_until,
        )
    if task.wait_kind == "signal":
        name = task.wait_name or ""
        limit = f", until {_when(task.wait_until, now)}" if task.wait_until is not None else ", with no time-out"
        if name.startswith(SPECIALIST_REPLY):
            return _at(
                task,
                ProgressReason.SPECIALIST,
                f"{step} waits for a specialist's reply to {name[:40]}{limit}",
                until=task.wait_until,
                signal_name=name,
            )
        return _at(
            task,
            ProgressReason.SIGNAL,
            f"{step} waits for the signal {name!r}{limit}",
            until=task.wait_until,
            signal_name=name,
        )
    if leased:
        return _at(
            task,
            ProgressReason.LEASED,
            f"{step}, attempt {task.attempt}, is leased to worker {task.lease_owner} until "
            f"{_when(task.visible_at, now)} (a worker that died holds it that long)",
            worker_id=task.lease_owner or "",
            until=task.visible_at,
        )
    if task.failures and task.visible_at is not None and task.visible_at > now:
        failure = task.last_failure
        said = f": {failure.type or 'error'}: {failure.message[:200]}" if failure is not None else ""
        return _at(
            task,
            ProgressReason.RETRY_AT,
            f"{step} failed (attempt {task.attempt}{said}); retried {_when(task.visible_at, now)}",
            until=task.visible_at,
            last_failure=failure,
        )
    graph = task.graph_key.rpartition("/")[2]
    lapsed, silent = "", ""
    if task.lease_owner is not None and task.visible_at is not None:
        lapsed = f"; worker {task.lease_owner}'s lease lapsed {_when(task.visible_at, now)}"
        silent = task.lease_owner
    # The worker whose lease lapsed polled last when it took the step: it is not polling now.
    lively = [p for p in pollers if now - p.last_poll <= recent and not _holds(silent, p.worker_id)]
    if lively:
        return _at(
            task,
            ProgressReason.READY,
            f"{step} is ready on queue {task.task_queue!r}: {len(lively)} worker(s) poll it for {graph}{lapsed}",
            pollers=len(lively),
            last_poll=lively[0].last_poll,
        )
    last = max((p.last_poll for p in pollers), default=None)
    seen = f"last poll {_when(last, now)}" if last is not None else "none has polled it since this server started"
    return _at(
        task,
        ProgressReason.NO_POLLER,
        f"no worker polls queue {task.task_queue!r} for {graph}: {step} is ready ({seen}){lapsed}",
        last_poll=last,
    )


def _holds(owner: str, worker_id: str) -> bool:
    """Whether a lease owner is this worker (with authentication, `<worker id>@<subject>`)."""
    return bool(owner) and (owner == worker_id or owner.startswith(worker_id + "@"))


def _at(task: TaskSnapshot, reason: ProgressReason, summary: str, **fields: Any) -> Progress:
    return Progress(
        reason, summary, task_queue=task.task_queue, step_index=task.step_index, attempt=task.attempt, **fields
    )


def _when(moment: datetime | None, now: datetime) -> str:
    """`in 12 s`, `3 min ago`, ... (`never` for None)."""
    if moment is None:
        return "never"
    delta = (moment - now).total_seconds()
    span = abs(delta)
    if span < 0.05:
        return "now"
    if span < 10:
        text = f"{span:.1f} s"
    elif span < 90:
        text = f"{span:.0f} s"
    elif span < 90 * 60:
        text = f"{span / 60:.0f} min"
    elif span < 36 * 3600:
        text = f"{span / 3600:.0f} h"
    else:
        text = f"{span / 86400:.0f} d"
    return f"in {text}" if delta > 0 else f"{text} ago"
