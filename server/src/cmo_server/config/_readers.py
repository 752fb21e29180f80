"""Reading and checking single settings from the environment, and hiding secrets in them.

Every reader takes the environment and the variable's name, so the `ConfigError` it raises names
the variable; the groups of `cmo_server.config` are built from these pieces.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import fields
from datetime import timedelta
from typing import Any

from cmo.durations import parse_duration

__all__ = ["ConfigError"]


class ConfigError(ValueError):
    """A setting is missing or invalid: `variable` names it, and the message starts with that name.

    Args:
        variable: The environment variable at fault, e.g. `CMO_LISTEN`.
        reason: What is wrong with it, as the rest of a sentence: `must be host:port, got 'x'`.
    """

    def __init__(self, variable: str, reason: str) -> None:
        super().__init__(f"{variable} {reason}")
        self.variable = variable
        """The variable the message is about, e.g. `CMO_LISTEN`."""
        self.reason = reason
        """The message without the variable's name, to put after a flag's name instead."""

    def __reduce__(self) -> tuple[type[ConfigError], tuple[str, str]]:
        # Exceptions are rebuilt from their args when pickled; these are not the message.
        return type(self), (self.variable, self.reason)


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


def _masked_repr(value: Any, **masked: object) -> str:
    """A dataclass's repr with the fields in `masked` shown as given there (secrets hidden)."""
    shown = (f"{f.name}={masked.get(f.name, getattr(value, f.name))!r}" for f in fields(value))
    return f"{type(value).__name__}({', '.join(shown)})"


def _quote(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def _utf8(env: Mapping[str, str], name: str) -> str:
    """A variable that goes into a URL: bytes that are not UTF-8 (surrogates here) cannot."""
    value = env.get(name, "")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ConfigError(name, "is not valid UTF-8") from None
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
    raise ConfigError(name, f"must be a host name, an IP address or a socket directory, got {host!r}")


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    port = _int(env, name, default)
    if not 0 < port < 65536:
        raise ConfigError(name, f"must be a port number (1-65535), got {port}")
    return port


def _check_address(name: str, address: str, *, or_empty: bool = False) -> None:
    """A `host:port` to listen on (the host may be an IPv6 address in brackets)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(name, f"must be host:port{' or empty' if or_empty else ''}, got {address!r}")


def _bool(env: Mapping[str, str], name: str, default: bool | None) -> bool | None:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("true", "1", "yes", "on"):
        return True
    if raw.lower() in ("false", "0", "no", "off"):
        return False
    raise ConfigError(name, f"must be true or false, got {raw!r}")


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(name, f"must be an integer, got {raw!r}") from None


def _seconds(env: Mapping[str, str], name: str, default: timedelta) -> timedelta:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(name, f"must be a number of seconds, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(name, f"must be positive, got {raw!r}")
    return timedelta(seconds=value)


def _duration(env: Mapping[str, str], name: str, default: timedelta | None) -> timedelta | None:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        # A unit is required: these decide when runs and blobs are deleted, and "30" is more
        # likely meant as 30 days than as 30 seconds.
        return parse_duration(text, unit_required=True)
    except ValueError:
        raise ConfigError(
            name, f"must be a duration of 0 or more with a unit, such as 30d, 12h or 1h30m, got {text!r}"
        ) from None
