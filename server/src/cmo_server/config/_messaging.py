"""Agents' messaging (A2A): the Redis the agents share, the keys their envelopes are signed with.

With REDIS_URL and CMO_A2A_KEYS set, the server consumes agents' replies to runs (see
`cmo_server.a2a`); with REDIS_URL alone it does not, and says so at start.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from cmo.a2a._signing import MIN_SECRET_BYTES
from cmo.a2a.topics import TOKEN
from cmo_server.config._readers import ConfigError, _host, _masked_repr, _port, _quote, _redact_url, _utf8

__all__ = ["MessagingConfig"]


@dataclass(frozen=True, slots=True, repr=False)
class MessagingConfig:
    """Where agents' messages travel."""

    VARIABLES: ClassVar[tuple[str, ...]] = (
        "REDIS_URL",
        "REDIS_HOST",
        "REDIS_PORT",
        "REDIS_PASSWORD",
        "NATS_URL",
        "CMO_A2A_KEYS",
        "CMO_A2A_PREFIX",
    )
    """Every variable this group reads."""

    redis_url: str = ""
    """Redis for agents' messaging, from REDIS_URL or REDIS_HOST/REDIS_PORT/REDIS_PASSWORD.
    May carry the password: shown only redacted."""
    nats_url: str = ""
    """NATS with JetStream for agents' messaging (NATS_URL, `nats://host:4222`), when there is no Redis."""
    a2a_keys: tuple[tuple[str, bytes], ...] = ()
    """HMAC keys of agents' envelopes, CMO_A2A_KEYS = `kid=secret[,kid=secret…]`; the first signs.
    Secrets: never shown."""
    a2a_prefix: str = "qa"
    """The first token of agents' topics, CMO_A2A_PREFIX."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> MessagingConfig:
        """Read and check REDIS_URL, else the URL REDIS_HOST, REDIS_PORT and REDIS_PASSWORD describe.

        Raises:
            ConfigError: one of them is malformed; the message never shows the password.
        """
        config = cls(
            redis_url=env.get("REDIS_URL", "").strip() or _redis_url(env),
            nats_url=env.get("NATS_URL", "").strip(),
            a2a_keys=_keys(env.get("CMO_A2A_KEYS", "")),
            a2a_prefix=env.get("CMO_A2A_PREFIX", "").strip() or "qa",
        )
        config.validate()
        return config

    def validate(self) -> None:
        """Raise `ConfigError` naming the first bad setting."""
        if self.redis_url:
            _check_redis_url(self.redis_url)
        if self.nats_url:
            parts = urllib.parse.urlsplit(self.nats_url)
            if parts.scheme not in ("nats", "tls") or not parts.hostname:
                raise ConfigError(
                    "NATS_URL",
                    f"must be a nats:// or tls:// URL such as nats://host:4222, got {_redact_url(self.nats_url)!r}",
                )
        if not TOKEN.fullmatch(self.a2a_prefix):
            raise ConfigError("CMO_A2A_PREFIX", f"must be a topic token (a-z, 0-9, _ and -), got {self.a2a_prefix!r}")
        for kid, secret in self.a2a_keys:
            if len(secret) < MIN_SECRET_BYTES:
                raise ConfigError("CMO_A2A_KEYS", f"key {kid!r} has {len(secret)} bytes; at least {MIN_SECRET_BYTES}")

    def __repr__(self) -> str:
        return _masked_repr(
            self, redis_url=_redact_url(self.redis_url), nats_url=_redact_url(self.nats_url), a2a_keys=self._key_ids()
        )

    def redacted(self) -> dict[str, Any]:
        """The settings as JSON, the password and the secrets masked."""
        return {
            "redis_url": _redact_url(self.redis_url),
            "nats_url": _redact_url(self.nats_url),
            "a2a_keys": self._key_ids(),
            "a2a_prefix": self.a2a_prefix,
        }

    def _key_ids(self) -> list[str]:
        return [f"{kid}=***" for kid, _ in self.a2a_keys]


def _keys(text: str) -> tuple[tuple[str, bytes], ...]:
    keys = []
    for i, item in enumerate(part.strip() for part in text.split(",") if part.strip()):
        kid, sep, secret = item.partition("=")
        if not sep or not kid.strip() or not secret:
            raise ConfigError("CMO_A2A_KEYS", f"item {i + 1} must be kid=secret")
        keys.append((kid.strip(), secret.encode()))
    return tuple(keys)


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
