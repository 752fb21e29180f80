"""The engine's ear for other servers: what the store pushes, handed to the dispatcher and the timers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from cmo_server.domain import Namespace
from cmo_server.engine._dispatcher import TaskDispatcher
from cmo_server.engine._timers import WaitTimers

__all__ = ["OtherServers"]


class OtherServers:
    """A `ReadyListener`: other servers' ready tasks wake pollers, their waits the timers."""

    def __init__(
        self, dispatcher: TaskDispatcher, timers: WaitTimers, run_ended: Callable[[Namespace, str], None]
    ) -> None:
        self._dispatcher = dispatcher
        self._timers = timers
        self._run_ended = run_ended

    def task_ready(self, task_queue: str, graph_key: str, at: datetime) -> None:
        self._dispatcher.task_ready(task_queue, graph_key, at)

    def wait_scheduled(self, at: datetime) -> None:
        self._timers.wake_at(at)

    def run_ended(self, namespace: Namespace, run_id: str) -> None:
        self._run_ended(namespace, run_id)

    def push_started(self) -> None:
        self._dispatcher.push_started()
        self._timers.push_started()

    def push_stopped(self) -> None:
        self._dispatcher.push_stopped()
        self._timers.push_stopped()
