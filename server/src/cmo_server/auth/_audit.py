"""The audit log: one record per write or admin call — who, what, in which namespace, the outcome.

Records go to the `cmo.audit` logger (JSON in `extra["audit"]`, and a readable line), so that a
deployment ships them where its logs go; on the event loop's next turn, so that the call's answer
does not wait for its record (`log_soon`). Task calls (a worker's records, heartbeats and
checkpoints, one per step) are not audited: they are the runs' own history.
"""

from __future__ import annotations

import logging
from typing import Any

from cmo_server._logging import log_soon

__all__ = ["AUDITED", "audit"]

logger = logging.getLogger("cmo.audit")

AUDITED = frozenset(
    {
        "/cmo.api.v1.RunService/StartRun",
        "/cmo.api.v1.RunService/ForkRun",
        "/cmo.api.v1.RunService/SignalRun",
        "/cmo.api.v1.RunService/CancelRun",
        "/cmo.api.v1.RunService/TerminateRun",
        "/cmo.api.v1.RunService/PruneRuns",
        "/cmo.api.v1.WorkerService/RegisterGraph",
        "/cmo.api.v1.RegistryService/RegisterAgent",
        "/cmo.api.v1.RegistryService/Deregister",
    }
)


def audit(method: str, *, who: str, request: Any, outcome: str) -> None:
    """Record one call of an audited method (`outcome`: OK or the status's name)."""
    if method not in AUDITED:
        return
    namespace = getattr(request, "namespace", None)
    where = f"{namespace.tenant or 'default'}/{namespace.project or 'default'}" if namespace is not None else ""
    record = {"who": who, "method": method.rpartition("/")[2], "namespace": where, "outcome": outcome}
    log_soon(
        logger,
        logging.INFO,
        "%s %s in %s: %s",
        who or "-",
        record["method"],
        where or "-",
        outcome,
        extra={"audit": record},
    )
