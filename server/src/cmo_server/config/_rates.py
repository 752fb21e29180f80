"""Rate limits: how many calls each namespace may make, and how many streams one connection may hold."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from cmo_server.config._readers import ConfigError, _int

__all__ = ["RateLimitConfig"]


@dataclass(frozen=True, slots=True)
class RateLimitConfig:
    """Per-namespace call rates (off unless set) and the streams a connection may open at once."""

    VARIABLES: ClassVar[tuple[str, ...]] = ("CMO_RATE_LIMIT", "CMO_RATE_BURST", "CMO_MAX_STREAMS_PER_CONNECTION")
    """Every variable this group reads."""

    calls_per_second: int = 0
    """CMO_RATE_LIMIT: the calls per second each namespace may make to the run and registry services
    (0: no limit); beyond it a call is RESOURCE_EXHAUSTED with the delay to retry after."""
    burst: int = 0
    """CMO_RATE_BURST: how many calls a namespace may make at once after a quiet spell (default:
    a second's worth)."""
    max_streams_per_connection: int = 1000
    """CMO_MAX_STREAMS_PER_CONNECTION: calls one client connection may have open at once (HTTP/2
    streams); a client past it waits for one to end."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RateLimitConfig:
        """Read and check the variables. ConfigError if one is malformed."""
        base = cls()
        rate = _int(env, "CMO_RATE_LIMIT", base.calls_per_second)
        config = cls(
            calls_per_second=rate,
            burst=_int(env, "CMO_RATE_BURST", base.burst),
            max_streams_per_connection=_int(env, "CMO_MAX_STREAMS_PER_CONNECTION", base.max_streams_per_connection),
        )
        config.validate()
        return config

    @property
    def bucket_size(self) -> int:
        """The burst a namespace may make: CMO_RATE_BURST, else one second's calls."""
        return self.burst or self.calls_per_second

    def validate(self) -> None:
        """Raise `ConfigError` naming the first bad setting."""
        if not 0 <= self.calls_per_second <= 1_000_000:
            raise ConfigError("CMO_RATE_LIMIT", "must be 0 (no limit) to 1000000 calls per second")
        if not 0 <= self.burst <= 10_000_000:
            raise ConfigError("CMO_RATE_BURST", "must be 0 (a second's worth) to 10000000 calls")
        if self.burst and not self.calls_per_second:
            raise ConfigError("CMO_RATE_BURST", "needs CMO_RATE_LIMIT: a burst of what rate?")
        if not 1 <= self.max_streams_per_connection <= 100_000:
            raise ConfigError("CMO_MAX_STREAMS_PER_CONNECTION", "must be 1 to 100000")

    def redacted(self) -> dict[str, Any]:
        return {
            "calls_per_second": self.calls_per_second,
            "burst": self.bucket_size,
            "max_streams_per_connection": self.max_streams_per_connection,
        }
