"""The run lifecycle, above the store and below the API."""

from cmo_server.engine._dispatcher import TaskDispatcher
from cmo_server.engine._engine import Engine, FailOutcome
from cmo_server.engine._gates import DENIED_TYPE, GateDenial, StepGate, StepView
from cmo_server.engine._metrics import EngineMetrics

__all__ = [
    "DENIED_TYPE",
    "Engine",
    "EngineMetrics",
    "FailOutcome",
    "GateDenial",
    "StepGate",
    "StepView",
    "TaskDispatcher",
]
