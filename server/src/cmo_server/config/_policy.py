"""Policies: a directory of Rego v1 policies gating steps and agent registrations, and where decisions go."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from cmo_server.config._readers import ConfigError

__all__ = ["PolicyConfig"]


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """Which policies the server enforces (none unless a directory is named)."""

    VARIABLES: ClassVar[tuple[str, ...]] = ("CMO_POLICY_DIR", "CMO_POLICY_DECISION_LOG")
    """Every variable this group reads."""

    directory: str = ""
    """CMO_POLICY_DIR: the policies (`*.rego`) and their data (`*.json`); read at start, again on
    SIGHUP and when a file changes. Unset: no gates."""
    decision_log: str = ""
    """CMO_POLICY_DECISION_LOG: a file every decision is appended to as a JSON line; unset, they go
    to the server's log (logger `cmo.policy.decisions`)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> PolicyConfig:
        """Read and check the CMO_POLICY_* variables. ConfigError if one is malformed."""
        config = cls(
            directory=env.get("CMO_POLICY_DIR", "").strip(),
            decision_log=env.get("CMO_POLICY_DECISION_LOG", "").strip(),
        )
        config.validate()
        return config

    @property
    def enabled(self) -> bool:
        return bool(self.directory)

    def validate(self) -> None:
        """Raise `ConfigError` naming the first bad setting."""
        if self.directory and not os.path.isdir(self.directory):
            raise ConfigError("CMO_POLICY_DIR", "must name a directory of .rego files")
        if self.decision_log:
            if not self.directory:
                raise ConfigError(
                    "CMO_POLICY_DECISION_LOG", "needs CMO_POLICY_DIR: without policies there is no decision"
                )
            parent = os.path.dirname(os.path.abspath(self.decision_log))
            if not os.path.isdir(parent) or os.path.isdir(self.decision_log):
                raise ConfigError("CMO_POLICY_DECISION_LOG", "must be a file in an existing directory")

    def redacted(self) -> dict[str, Any]:
        return {"directory": self.directory, "decision_log": self.decision_log or "server log"}
