"""The decision log: one JSON line per decision, with the bundle that made it."""

from __future__ import annotations

import json
import logging
import time
from typing import IO, Any

from cmo.policy import Decision

__all__ = ["DecisionLog"]

logger = logging.getLogger("cmo.policy.decisions")


class DecisionLog:
    """Appends decisions to a file (line-buffered: each is written as it is made), or to the server's log."""

    def __init__(self, path: str = "") -> None:
        self.path = path
        self._file: IO[str] | None = open(path, "a", buffering=1, encoding="utf-8") if path else None  # noqa: SIM115

    def record(self, decision: Decision, about: dict[str, Any]) -> None:
        """Log `decision`, with what it was about (run, step, agent, caller)."""
        line = json.dumps(
            {
                "ts": round(time.time(), 3),
                "gate": decision.gate,
                "allowed": decision.allowed,
                "denials": [d.to_json() for d in decision.denials],
                "bundle": decision.bundle_hash,
                "elapsed_us": round(decision.elapsed * 1e6),
                "evaluated": decision.evaluated,
                **about,
            },
            separators=(",", ":"),
            default=str,
        )
        if self._file is not None:
            self._file.write(line + "\n")
        else:
            logger.log(logging.INFO if decision.allowed else logging.WARNING, "%s", line)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
