"""The web UI: where `cmo-server` serves it (its HTTP/JSON gateway and its pages), if anywhere."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from cmo_server.config._readers import ConfigError, _check_address

__all__ = ["UI_PORT", "UIConfig"]

UI_PORT = 8233
"""The port `cmo-server start-dev` serves the web UI on unless CMO_UI_LISTEN says otherwise."""


@dataclass(frozen=True, slots=True)
class UIConfig:
    """The web UI's address (off unless one is given; `start-dev` gives one)."""

    VARIABLES: ClassVar[tuple[str, ...]] = ("CMO_UI_LISTEN",)
    """Every variable this group reads."""

    listen: str = ""
    """CMO_UI_LISTEN: host:port of the web UI and its JSON API; empty: no UI."""
    optional: bool = False
    """Set for start-dev's default address: a port already in use turns the UI off with a warning
    instead of stopping the start (a second dev server, or a test's, still starts)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> UIConfig:
        """Read and check CMO_UI_LISTEN. ConfigError if it is malformed."""
        config = cls(listen=env.get("CMO_UI_LISTEN", "").strip())
        config.validate()
        return config

    @property
    def enabled(self) -> bool:
        return bool(self.listen)

    def beside(self, grpc_listen: str, env: Mapping[str, str]) -> UIConfig:
        """This, or the UI on the gRPC address's host at port 8233 when CMO_UI_LISTEN is not set at all."""
        if "CMO_UI_LISTEN" in env:
            return self
        return replace(self, listen=f"{grpc_listen.rpartition(':')[0]}:{UI_PORT}", optional=True)

    def validate(self) -> None:
        """Raise `ConfigError` naming the first bad setting."""
        if self.listen:
            _check_address("CMO_UI_LISTEN", self.listen, or_empty=True)
            if not 0 <= int(self.listen.rpartition(":")[2]) <= 65535:
                raise ConfigError("CMO_UI_LISTEN", f"has no valid port: {self.listen!r}")

    def redacted(self) -> dict[str, Any]:
        return {"listen": self.listen or "off"}
