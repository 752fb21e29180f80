"""The run lifecycle, above the store and below the API."""

from cmo_server.engine._dispatcher import TaskDispatcher
from cmo_server.engine._engine import Engine, FailOutcome
from cmo_server.engine._metrics import EngineMetrics

__all__ = ["Engine", "EngineMetrics", "FailOutcome", "TaskDispatcher"]
