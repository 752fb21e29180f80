"""Agents' messaging (A2A): the Redis the agents share, read and checked but not used by the server yet."""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from cmo_server.config._readers import ConfigError, _host, _masked_repr, _port, _quote, _redact_url, _utf8

__all__ = ["MessagingConfig"]


@dataclass(frozen=True, slots=True, repr=False)
class MessagingConfig:
    """Where agents' messages travel."""

    VARIABLES: ClassVar[tuple[str, ...]] = ("REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD")
    """Every variable this group reads."""

    redis_url: str = ""
    """Redis for agents' messaging, from REDIS_URL or REDIS_HOST/REDIS_PORT/REDIS_PASSWORD.
    May carry the password: shown only redacted."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> MessagingConfig:
        """Read and check REDIS_URL, else the URL REDIS_HOST, REDIS_PORT and REDIS_PASSWORD describe.

        Raises:
            ConfigError: one of them is malformed; the message never shows the password.
        """
        config = cls(redis_url=env.get("REDIS_URL", "").strip() or _redis_url(env))
        config.validate()
        return config

    def validate(self) -> None:
        """Raise `ConfigError` naming the first bad setting."""
        if self.redis_url:
            _check_redis_url(self.redis_url)

    def __repr__(self) -> str:
        return _masked_repr(self, redis_url=_redact_url(self.redis_url))

    def redacted(self) -> dict[str, Any]:
        """The settings as JSON, the password masked."""
        return {"redis_url": _redact_url(self.redis_url)}


def _check_redis_url(url: str) -> None:
    shown = _redact_url(url)
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ConfigError(
            "REDIS_URL", f"must be a redis:// or rediss:// URL such as redis://host:6379/0, got {shown!r}"
        )
    if parts.path.strip("/") and not parts.path.strip("/").isdigit():
        raise ConfigError("REDIS_URL", f"must end with a database number such as /0, got {shown!r}")


def _redis_url(env: Mapping[str, str]) -> str:
    """The URL REDIS_HOST, REDIS_PORT (6379) and REDIS_PASSWORD describe; empty without REDIS_HOST."""
    if not env.get("REDIS_HOST", "").strip():
        return ""
    host, port = _host(env, "REDIS_HOST"), _port(env, "REDIS_PORT", 6379)
    if host.startswith("%2F"):
        raise ConfigError("REDIS_HOST", f"must be a host name or an IP address, got {env['REDIS_HOST']!r}")
    password = _utf8(env, "REDIS_PASSWORD")
    return f"redis://{f':{_quote(password)}@' if password else ''}{host}:{port}/0"
