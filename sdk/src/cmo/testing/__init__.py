"""Testing helpers: replay recorded runs against the graph code, like golden tests."""

from cmo._history import RunHistory
from cmo.testing._replay import ReplayDivergenceError, Replayer, ReplayReport, StepVerdict

__all__ = ["ReplayDivergenceError", "ReplayReport", "Replayer", "RunHistory", "StepVerdict"]
