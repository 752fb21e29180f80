"""The engine's timings and size limits."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar

from cmo_server.config._readers import ConfigError, _int, _seconds

__all__ = ["EngineLimits"]


@dataclass(frozen=True, slots=True)
class EngineLimits:
    """Timings and size limits the engine enforces."""

    VARIABLES: ClassVar[tuple[str, ...]] = (
        "CMO_TASK_LEASE_SECONDS",
        "CMO_MAX_PAYLOAD_BYTES",
        "CMO_SWEEP_INTERVAL_SECONDS",
        "CMO_FALLBACK_SWEEP_SECONDS",
    )
    """Every variable this group reads."""

    task_lease: timedelta = timedelta(seconds=30)
    """How long a worker holds a task without a heartbeat before it goes to another worker."""
    max_poll_wait: timedelta = timedelta(seconds=60)
    """Longest long-poll a worker may ask for."""
    default_poll_wait: timedelta = timedelta(seconds=20)
    """Long-poll length when the worker asks for none."""
    max_payload_bytes: int = 4 * 1024 * 1024
    """Largest state, input or output accepted."""
    sweep_interval: timedelta = timedelta(seconds=1)
    """How often parked pollers look for tasks that became ready by time (retries, lease expiry),
    and due waits are looked for, when the store pushes nothing (SQLite, or a broken connection)."""
    fallback_sweep_interval: timedelta = timedelta(seconds=30)
    """With Postgres notifications: the longest time between those looks, in case one was missed."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> EngineLimits:
        """Read and check CMO_TASK_LEASE_SECONDS, CMO_MAX_PAYLOAD_BYTES and the sweep intervals.

        Raises:
            ConfigError: one of them is malformed.
        """
        base = cls()
        limits = cls(
            task_lease=_seconds(env, "CMO_TASK_LEASE_SECONDS", base.task_lease),
            max_payload_bytes=_int(env, "CMO_MAX_PAYLOAD_BYTES", base.max_payload_bytes),
            sweep_interval=_seconds(env, "CMO_SWEEP_INTERVAL_SECONDS", base.sweep_interval),
            fallback_sweep_interval=_seconds(env, "CMO_FALLBACK_SWEEP_SECONDS", base.fallback_sweep_interval),
        )
        limits.validate()
        return limits

    def validate(self) -> None:
        """Raise `ConfigError` naming the first bad setting."""
        if self.task_lease <= timedelta(0):
            raise ConfigError("CMO_TASK_LEASE_SECONDS", "must be positive")
        if self.sweep_interval <= timedelta(0):
            raise ConfigError("CMO_SWEEP_INTERVAL_SECONDS", "must be positive")
        if self.fallback_sweep_interval < self.sweep_interval:
            raise ConfigError("CMO_FALLBACK_SWEEP_SECONDS", "must be at least CMO_SWEEP_INTERVAL_SECONDS")
        if self.max_payload_bytes < 1024:
            raise ConfigError("CMO_MAX_PAYLOAD_BYTES", "must be at least 1024")

    def redacted(self) -> dict[str, Any]:
        """The settings as JSON (seconds as numbers)."""
        return {
            "task_lease_s": self.task_lease.total_seconds(),
            "sweep_interval_s": self.sweep_interval.total_seconds(),
            "fallback_sweep_s": self.fallback_sweep_interval.total_seconds(),
            "max_payload_bytes": self.max_payload_bytes,
        }
