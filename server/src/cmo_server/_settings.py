"""Reading and checking single settings from the environment, and hiding secrets in them.

`cmo_server.config` builds the whole `ServerConfig` from these pieces.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from datetime import timedelta

import psycopg
from psycopg.conninfo import conninfo_to_dict

from cmo import RunStatus
from cmo.durations import parse_duration

__all__ = ["ConfigError", "TERMINAL_STATUSES", "parse_otlp_headers"]


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
"""Values of CMO_LOG_LEVEL / LOG_LEVEL, in any case; WARN is read as WARNING."""


SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
"""Values of POSTGRES_SSLMODE (libpq's `sslmode`)."""


class ConfigError(ValueError):
    """A setting is missing or invalid; the message starts with the variable's name."""

    @property
    def variable(self) -> str:
        """The variable the message is about, e.g. `CMO_LISTEN`."""
        found = re.match(r"[A-Z][A-Z0-9_]*", str(self))
        return found.group() if found else ""

    @property
    def reason(self) -> str:
        """The message without the variable's name, to put after a flag's name instead."""
        return str(self)[len(self.variable) :].lstrip(" :")


TERMINAL_STATUSES = (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.TERMINATED)
"""The statuses of ended runs, which retention may prune."""


def parse_otlp_headers(raw: str) -> dict[str, str]:
    """OTEL_EXPORTER_OTLP_HEADERS as a dict: `key=value` pairs, comma-separated, values URL-encoded.

    Raises:
        ValueError: a pair has no `=` or an empty key; the message names the key, not the value.
    """
    headers: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in raw.split(","))):
        key, eq, value = pair.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"{key.strip()!r} has no value" if key.strip() else "a pair has no key")
        headers[key.strip().lower()] = urllib.parse.unquote(value.strip())
    return headers


# A `password=` pair: in a URL's query (ends at & or #), or in a libpq key=value string (may be quoted).
_QUERY_PASSWORD = re.compile(r"([?&](?:ssl)?password=)[^&#]*", re.IGNORECASE)


_KEYWORD_PASSWORD = re.compile(r"(\b(?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'?|\S*)", re.IGNORECASE)


def _redact_url(url: str) -> str:
    """`url` (or a libpq key=value string) with its password masked, wherever it is written."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return _KEYWORD_PASSWORD.sub(r"\1***", url)
    rest = _QUERY_PASSWORD.sub(r"\1***", rest)
    # The last @ ends the userinfo: a password holding an unescaped @ or / (which
    # CMO_DATABASE_URL's check reports) is masked whole rather than cut short and shown.
    userinfo, at, host = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return f"{scheme}://{rest}"
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}"


def _redact_headers(raw: str) -> str:
    """OTEL_EXPORTER_OTLP_HEADERS with every value masked; never raises, for `repr`."""
    return ",".join(f"{pair.partition('=')[0].strip()}=***" for pair in raw.split(",") if pair.strip())


def _quote(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def _utf8(env: Mapping[str, str], name: str) -> str:
    """A variable that goes into a URL: bytes that are not UTF-8 (surrogates here) cannot."""
    value = env.get(name, "")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ConfigError(f"{name} is not valid UTF-8") from None
    return value


def _host(env: Mapping[str, str], name: str) -> str:
    """A host name, an IP address (v6 in brackets, as a URL writes it), or a socket directory."""
    host = env.get(name, "").strip()
    if host.startswith("/"):  # a Unix socket directory: percent-encoded, as libpq reads it
        return _quote(host)
    if re.fullmatch(r"[A-Za-z0-9._-]+", host):
        return host
    if re.fullmatch(r"\[?[0-9A-Fa-f:.]+\]?", host) and ":" in host:
        return f"[{host.strip('[]')}]"
    raise ConfigError(f"{name} must be a host name, an IP address or a socket directory, got {host!r}")


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    port = _int(env, name, default)
    if not 0 < port < 65536:
        raise ConfigError(f"{name} must be a port number (1-65535), got {port}")
    return port


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
        raise ConfigError(f"POSTGRES_SSLMODE must be one of {', '.join(SSL_MODES)}, got {sslmode!r}")
    userinfo = _quote(user) + (f":{_quote(password)}" if password else "")
    query = f"?sslmode={sslmode}" if sslmode else ""
    return f"postgresql://{userinfo}@{host}:{port}/{_quote(database)}{query}"


def _check_database_url(url: str) -> None:
    name, shown = "CMO_DATABASE_URL", _redact_url(url)
    scheme, sep, rest = url.partition("://")
    if sep and scheme not in ("postgresql", "postgres"):
        raise ConfigError(f"{name} must be a postgresql:// URL or a libpq key=value string, got {shown!r}")
    escape = "percent-encode @, /, : and # in the user and password (%40, %2F, %3A, %23), or use POSTGRES_*"
    if sep and rest.partition("/")[0].partition("?")[0].count("@") > 1:
        raise ConfigError(f"{name} has an @ in its user or password: {escape}")
    try:
        # libpq's own parser, so what passes here is what the pool will connect with.
        parsed = conninfo_to_dict(url)
    except UnicodeError:
        raise ConfigError(f"{name} is not valid UTF-8") from None
    except psycopg.ProgrammingError:
        # libpq's message quotes the string, which may hold the password: not shown.
        raise ConfigError(
            f"{name} must be a postgresql://user:password@host:5432/db URL or a libpq key=value string, got {shown!r}"
        ) from None
    if not all(p.isdigit() for p in str(parsed.get("port") or "5432").split(",")):
        raise ConfigError(f"{name} has a port that is not a number: {escape}")


def _check_redis_url(url: str) -> None:
    shown = _redact_url(url)
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ConfigError(f"REDIS_URL must be a redis:// or rediss:// URL such as redis://host:6379/0, got {shown!r}")
    if parts.path.strip("/") and not parts.path.strip("/").isdigit():
        raise ConfigError(f"REDIS_URL must end with a database number such as /0, got {shown!r}")


def _redis_url(env: Mapping[str, str]) -> str:
    """The URL REDIS_HOST, REDIS_PORT (6379) and REDIS_PASSWORD describe; empty without REDIS_HOST."""
    if not env.get("REDIS_HOST", "").strip():
        return ""
    host, port = _host(env, "REDIS_HOST"), _port(env, "REDIS_PORT", 6379)
    if host.startswith("%2F"):
        raise ConfigError(f"REDIS_HOST must be a host name or an IP address, got {env['REDIS_HOST']!r}")
    password = _utf8(env, "REDIS_PASSWORD")
    return f"redis://{f':{_quote(password)}@' if password else ''}{host}:{port}/0"


def _is_endpoint(endpoint: str) -> bool:
    """`host:port` or an http(s) URL, as the OTLP exporter takes them."""
    scheme, sep, rest = endpoint.partition("://")
    if not sep:
        scheme, rest = "", endpoint
    if scheme not in ("", "http", "https") or any(c.isspace() for c in endpoint):
        return False
    host = rest.rpartition("@")[2].partition("/")[0]
    if scheme:
        return bool(host)
    name, _, port = host.rpartition(":")
    return bool(name) and port.isdigit()


def _log_level(env: Mapping[str, str], default: str) -> str:
    for name in ("CMO_LOG_LEVEL", "LOG_LEVEL"):  # the first one set, so an error names the one read
        if raw := env.get(name, "").strip():
            level = "WARNING" if raw.upper() == "WARN" else raw.upper()
            if level not in LOG_LEVELS:
                raise ConfigError(f"{name} must be one of {', '.join(LOG_LEVELS)}, got {raw!r}")
            return level
    return default


def _bool(env: Mapping[str, str], name: str, default: bool | None) -> bool | None:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("true", "1", "yes", "on"):
        return True
    if raw.lower() in ("false", "0", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None


def _seconds(env: Mapping[str, str], name: str, default: timedelta) -> timedelta:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {raw!r}")
    return timedelta(seconds=value)


TERMINAL_NAMES = {s.name.lower(): s for s in TERMINAL_STATUSES}


def _duration(env: Mapping[str, str], name: str, default: timedelta | None) -> timedelta | None:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        return parse_duration(text)
    except ValueError as err:
        raise ConfigError(f"{name}: {err}") from None


def _statuses(env: Mapping[str, str], name: str, default: tuple[RunStatus, ...]) -> tuple[RunStatus, ...]:
    text = env.get(name, "").strip()
    if not text:
        return default
    statuses = []
    for part in (p.strip().lower() for p in text.split(",")):
        if part not in TERMINAL_NAMES:
            raise ConfigError(f"{name} lists {part!r}: only ended runs are pruned ({', '.join(TERMINAL_NAMES)})")
        statuses.append(TERMINAL_NAMES[part])
    return tuple(statuses)
