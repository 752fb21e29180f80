"""A run's whole history as one JSON document: what `cmoctl runs export` writes and replay reads."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cmo._types import FailureInfo, RecordedActivity, RunInfo, RunProgress, RunStatus, StepInfo, WaitInfo

__all__ = ["FORMAT", "RunHistory"]

FORMAT = "cmo.history/v1"


@dataclass(frozen=True, slots=True)
class RunHistory:
    """A run and its checkpointed steps (with their activities), enough to replay it offline."""

    run: RunInfo
    steps: tuple[StepInfo, ...]

    def to_json(self) -> dict[str, Any]:
        """The history as a JSON-shaped document."""
        run = _plain(asdict(self.run))
        if run["progress"] is None:  # an ended run's: histories written before there was progress have none
            del run["progress"]
        return {"format": FORMAT, "run": run, "steps": [_plain(asdict(s)) for s in self.steps]}

    def dumps(self) -> str:
        """The history as indented JSON text."""
        return json.dumps(self.to_json(), indent=2, sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> RunHistory:
        """Read a document written by `to_json`.

        Raises:
            ValueError: it is not a history document of a known format.
        """
        if doc.get("format") != FORMAT:
            raise ValueError(f"not a run history: format is {doc.get('format')!r}, expected {FORMAT!r}")
        r = doc["run"]
        waiting, progress = r.get("waiting"), r.get("progress")
        run = RunInfo(
            **{**r, "status": RunStatus[r["status"]], "failure": _failure(r["failure"])}
            | {k: _when(r[k]) for k in ("created_at", "updated_at", "completed_at")}
            | {"waiting": None if waiting is None else WaitInfo(**{**waiting, "until": _when(waiting["until"])})}
            | {"progress": None if progress is None else _progress(progress)}
        )
        steps = tuple(
            StepInfo(
                **{**s, "activities": tuple(_activity(a) for a in s["activities"])}
                | {k: _when(s[k]) for k in ("logical_time", "started_at", "finished_at")}
            )
            for s in doc["steps"]
        )
        return cls(run, steps)

    @classmethod
    def load(cls, path: str | Path) -> RunHistory:
        """Read a history file (`cmoctl runs export RUN_ID > history.json`)."""
        return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8")))


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, RunStatus):
        return value.name
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _when(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _failure(data: dict[str, Any] | None) -> FailureInfo | None:
    return None if data is None else FailureInfo(**data)


def _progress(data: dict[str, Any]) -> RunProgress:
    times = {k: _when(data[k]) for k in ("until", "last_poll")}
    return RunProgress(**{**data, **times, "last_failure": _failure(data["last_failure"])})


def _activity(data: dict[str, Any]) -> RecordedActivity:
    return RecordedActivity(**{**data, "error": _failure(data["error"])})
