"""Retention: which ended runs the server prunes on a schedule, and when unreferenced blobs go."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar

from cmo import RunStatus
from cmo_server.config._readers import ConfigError, _duration

__all__ = ["TERMINAL_STATUSES", "RetentionConfig"]


TERMINAL_STATUSES = (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.TERMINATED)
"""The statuses of ended runs, which retention may prune."""

_TERMINAL_NAMES = {s.name.lower(): s for s in TERMINAL_STATUSES}


@dataclass(frozen=True, slots=True)
class RetentionConfig:
    """The pruning schedule: off unless `older_than` is set."""

    VARIABLES: ClassVar[tuple[str, ...]] = (
        "CMO_RETENTION",
        "CMO_RETENTION_STATUSES",
        "CMO_PRUNE_INTERVAL",
        "CMO_BLOB_GC_GRACE",
    )
    """Every variable this group reads."""

    older_than: timedelta | None = None
    """Ended runs older than this are pruned on a schedule (CMO_RETENTION, e.g. 30d); None: kept."""
    statuses: tuple[RunStatus, ...] = TERMINAL_STATUSES
    """Which ended runs the schedule prunes (CMO_RETENTION_STATUSES, e.g. completed,terminated)."""
    prune_interval: timedelta = timedelta(hours=1)
    """How often the pruning schedule runs (CMO_PRUNE_INTERVAL, e.g. 1h)."""
    blob_gc_grace: timedelta = timedelta(hours=1)
    """Blobs younger than this are never collected: a payload's blob is written before its row."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RetentionConfig:
        """Read and check CMO_RETENTION, CMO_RETENTION_STATUSES, CMO_PRUNE_INTERVAL and CMO_BLOB_GC_GRACE.

        Raises:
            ConfigError: one of them is malformed.
        """
        base = cls()
        config = cls(
            older_than=_duration(env, "CMO_RETENTION", None),
            statuses=_statuses(env, "CMO_RETENTION_STATUSES", base.statuses),
            prune_interval=_duration(env, "CMO_PRUNE_INTERVAL", base.prune_interval) or base.prune_interval,
            blob_gc_grace=_duration(env, "CMO_BLOB_GC_GRACE", base.blob_gc_grace) or base.blob_gc_grace,
        )
        config.validate()
        return config

    def validate(self) -> None:
        """Raise `ConfigError` naming the first bad setting."""
        if self.older_than is not None and self.older_than <= timedelta(0):
            raise ConfigError("CMO_RETENTION", "must be a positive duration such as 30d, or empty to keep runs")
        if self.prune_interval <= timedelta(0):
            raise ConfigError("CMO_PRUNE_INTERVAL", "must be a positive duration such as 1h")

    def redacted(self) -> dict[str, Any]:
        """The settings as JSON (durations as text such as `30 days, 0:00:00`)."""
        return {
            "older_than": None if self.older_than is None else str(self.older_than),
            "statuses": [s.name.lower() for s in self.statuses],
            "prune_interval": str(self.prune_interval),
            "blob_gc_grace": str(self.blob_gc_grace),
        }


def _statuses(env: Mapping[str, str], name: str, default: tuple[RunStatus, ...]) -> tuple[RunStatus, ...]:
    text = env.get(name, "").strip()
    if not text:
        return default
    statuses = []
    for part in (p.strip().lower() for p in text.split(",")):
        if part not in _TERMINAL_NAMES:
            raise ConfigError(name, f"lists {part!r}: only ended runs are pruned ({', '.join(_TERMINAL_NAMES)})")
        statuses.append(_TERMINAL_NAMES[part])
    return tuple(statuses)
