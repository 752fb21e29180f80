"""The decision log: one JSON line per decision, with the bundle that made it."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from typing import IO, Any

from cmo.policy import Decision

__all__ = ["DecisionLog"]

logger = logging.getLogger("cmo.policy.decisions")


class DecisionLog:
    """Decisions appended to a file (or logged to the server's log) as soon as the loop is free.

    A decision is on the path of the step it is about; writing its line need not be. Decided on
    an event loop, its line waits for that loop's next turn (after the answer it was part of is
    on its way) and is written then, with the others of the same turn, in one write; decided
    elsewhere, at once. `flush` and `close` write what waits.
    """

    def __init__(self, path: str = "") -> None:
        self.path = path
        self._file: IO[str] | None = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115
        self._waiting: list[tuple[float, Decision, dict[str, Any]]] = []
        # The gates decide on the loop, but anything may: `_lock` guards what waits, `_writing`
        # keeps each flush's lines together and in order.
        self._lock = threading.Lock()
        self._writing = threading.Lock()

    def record(self, decision: Decision, about: dict[str, Any]) -> None:
        """Log `decision`, with what it was about (run, step, agent, caller)."""
        with self._lock:
            self._waiting.append((time.time(), decision, about))
            first = len(self._waiting) == 1
        if first:  # else a flush is due already
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no loop on this thread: now
                self.flush()

    def flush(self) -> None:
        """Write the lines that wait."""
        with self._writing:
            with self._lock:
                waiting, self._waiting = self._waiting, []
            if waiting:
                self._write(waiting)

    def _write(self, waiting: list[tuple[float, Decision, dict[str, Any]]]) -> None:
        if self._file is None:
            for ts, decision, about in waiting:
                logger.log(logging.INFO if decision.allowed else logging.WARNING, "%s", _line(ts, decision, about))
            return
        try:
            self._file.write("".join(_line(*entry) + "\n" for entry in waiting))
            self._file.flush()
        except (OSError, ValueError):  # a full disk must not stop the decisions, only their log
            logger.exception("%d decisions could not be written to the decision log", len(waiting))

    def close(self) -> None:
        """Write what waits and close the file."""
        self.flush()
        if self._file is not None:
            file, self._file = self._file, None
            try:
                file.close()
            except OSError:  # what the failed writes left in its buffer
                logger.exception("the decision log could not be closed cleanly")


def _line(ts: float, decision: Decision, about: dict[str, Any]) -> str:
    return json.dumps(
        {
            "ts": round(ts, 3),
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
