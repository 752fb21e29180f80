"""The store's settings: Postgres (a URL, or the standard POSTGRES_* variables) or an SQLite file."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import psycopg
from psycopg.conninfo import conninfo_to_dict

from cmo_server.config._readers import ConfigError, _host, _int, _masked_repr, _port, _quote, _redact_url, _utf8

__all__ = ["POSTGRES_VARIABLES", "SSL_MODES", "StoreConfig"]


SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
"""Values of POSTGRES_SSLMODE (libpq's `sslmode`)."""

POSTGRES_VARIABLES = (
    "POSTGRES_HOST",
    "POSTGRES_PORT",
    "POSTGRES_USER",
    "POSTGRES_PASSWORD",
    "POSTGRES_DB",
    "POSTGRES_SSLMODE",
)
"""The standard Postgres variables, read when CMO_DATABASE_URL is not set and POSTGRES_HOST is."""


@dataclass(frozen=True, slots=True, repr=False)
class StoreConfig:
    """Where runs are stored: Postgres when `database_url` is set, else the SQLite file."""

    VARIABLES: ClassVar[tuple[str, ...]] = ("CMO_DATABASE_URL", *POSTGRES_VARIABLES, "CMO_SQLITE_PATH", "CMO_POOL_SIZE")
    """Every variable this group reads."""

    database_url: str = ""
    """Postgres URL (`cmo-server start`), from CMO_DATABASE_URL or else the POSTGRES_* variables;
    empty for the SQLite file of `start-dev`. May carry the password: shown only redacted."""
    sqlite_path: str = ".cmo/dev.db"
    """SQLite file of `start-dev` (CMO_SQLITE_PATH)."""
    pool_size: int = 8
    """Postgres connections (CMO_POOL_SIZE)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> StoreConfig:
        """Read and check CMO_DATABASE_URL (else POSTGRES_*), CMO_SQLITE_PATH and CMO_POOL_SIZE.

        Raises:
            ConfigError: one of them is malformed; the message never shows the password.
        """
        base = cls()
        config = cls(
            database_url=env.get("CMO_DATABASE_URL", "").strip() or _postgres_url(env),
            sqlite_path=env.get("CMO_SQLITE_PATH") or base.sqlite_path,
            pool_size=_int(env, "CMO_POOL_SIZE", base.pool_size),
        )
        config.validate()
        return config

    def validate(self) -> None:
        """Raise `ConfigError` naming the first bad setting."""
        if self.database_url:
            _check_database_url(self.database_url)
        elif not self.sqlite_path.strip() or os.path.isdir(self.sqlite_path):
            raise ConfigError("CMO_SQLITE_PATH", f"must name a file, got {self.sqlite_path!r}")
        if self.pool_size < 1:
            raise ConfigError("CMO_POOL_SIZE", f"must be at least 1, got {self.pool_size}")

    def __repr__(self) -> str:
        return _masked_repr(self, database_url=_redact_url(self.database_url))

    def redacted(self) -> dict[str, Any]:
        """The settings as JSON, the password masked."""
        return {
            "database_url": _redact_url(self.database_url),
            "sqlite_path": self.sqlite_path if not self.database_url else "",
            "pool_size": self.pool_size,
        }


def _postgres_url(env: Mapping[str, str]) -> str:
    """The URL the POSTGRES_* variables describe; empty without POSTGRES_HOST.

    As with the official image, POSTGRES_USER defaults to `postgres` and POSTGRES_DB to the user.
    Every part is percent-encoded, so a password holding @, / or : is passed through intact.
    """
    if not env.get("POSTGRES_HOST", "").strip():
        return ""
    host, port = _host(env, "POSTGRES_HOST"), _port(env, "POSTGRES_PORT", 5432)
    user = _utf8(env, "POSTGRES_USER") or "postgres"
    password = _utf8(env, "POSTGRES_PASSWORD")
    database = _utf8(env, "POSTGRES_DB") or user
    sslmode = env.get("POSTGRES_SSLMODE", "").strip()
    if sslmode and sslmode not in SSL_MODES:
        raise ConfigError("POSTGRES_SSLMODE", f"must be one of {', '.join(SSL_MODES)}, got {sslmode!r}")
    userinfo = _quote(user) + (f":{_quote(password)}" if password else "")
    query = f"?sslmode={sslmode}" if sslmode else ""
    return f"postgresql://{userinfo}@{host}:{port}/{_quote(database)}{query}"


def _check_database_url(url: str) -> None:
    name, shown = "CMO_DATABASE_URL", _redact_url(url)
    scheme, sep, rest = url.partition("://")
    if sep and scheme not in ("postgresql", "postgres"):
        raise ConfigError(name, f"must be a postgresql:// URL or a libpq key=value string, got {shown!r}")
    escape = "percent-encode @, /, : and # in the user and password (%40, %2F, %3A, %23), or use POSTGRES_*"
    if sep and rest.partition("/")[0].partition("?")[0].count("@") > 1:
        raise ConfigError(name, f"has an @ in its user or password: {escape}")
    try:
        # libpq's own parser, so what passes here is what the pool will connect with.
        parsed = conninfo_to_dict(url)
    except UnicodeError:
        raise ConfigError(name, "is not valid UTF-8") from None
    except psycopg.ProgrammingError:
        # libpq's message quotes the string, which may hold the password: not shown.
        raise ConfigError(
            name, f"must be a postgresql://user:password@host:5432/db URL or a libpq key=value string, got {shown!r}"
        ) from None
    if not all(p.isdigit() for p in str(parsed.get("port") or "5432").split(",")):
        raise ConfigError(name, f"has a port that is not a number: {escape}")
