"""The run lifecycle: start, dispatch, checkpoint, retry, finish. No SQL and no gRPC here."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

from cmo.serialization import state_hash
from cmo_server._background import log_crash
from cmo_server.config import EngineLimits
from cmo_server.domain import (
    END_NODE,
    ActivityRecord,
    AttemptEnd,
    Checkpoint,
    CompleteOutcome,
    Failure,
    GraphSpec,
    Namespace,
    NewFork,
    NewRun,
    NewSignal,
    Run,
    RunStatus,
    SignalOutcome,
    Step,
    Task,
    TaskKey,
    TaskRef,
    WaitOutcome,
    WaitRequest,
    cancelled_failure,
    graph_key,
)
from cmo_server.engine._clashes import check_same_fork, check_same_start
from cmo_server.engine._dispatcher import TaskDispatcher
from cmo_server.engine._failures import FailOutcome, failure_decider
from cmo_server.engine._gates import GateDenial, StepGate, StepView
from cmo_server.engine._metrics import EngineMetrics
from cmo_server.engine._payloads import canonical_payload
from cmo_server.engine._push import OtherServers
from cmo_server.engine._timers import WaitTimers
from cmo_server.errors import InvalidArgument, NotFound, StaleLease, shown
from cmo_server.store import GraphPage, RunPage, Store

__all__ = ["Engine", "FailOutcome"]

logger = logging.getLogger(__name__)

_Finish = Callable[[Run], Run]
"""Turns a run as read before it finished into the finished run."""

RUN_RECHECK_SECONDS = 5.0
"""How often WaitRun re-reads a run no event has woken: a run finished by another server wakes it
through the store's notifications where there are any (Postgres), else by this re-read."""


class Engine:
    """Owns every state transition of every run; each is one `Store` transaction."""

    def __init__(
        self,
        store: Store,
        limits: EngineLimits | None = None,
        *,
        metrics: EngineMetrics | None = None,
        gate: StepGate | None = None,
    ) -> None:
        """`gate`, if any, is asked before each step is dispatched and before each is checkpointed."""
        self._store = store
        self._gate = gate
        self._limits = limits or EngineLimits()
        self._metrics = metrics or EngineMetrics()
        sweep = self._limits.sweep_interval.total_seconds()
        fallback = self._limits.fallback_sweep_interval.total_seconds()
        self._dispatcher = TaskDispatcher(
            store,
            sweep_interval=sweep,
            fallback_interval=fallback,
            lease_check_interval=self._limits.task_lease.total_seconds() / 2,
        )
        self._timers = WaitTimers(
            self.fire_due_waits, store.next_wait_at, sweep_interval=sweep, fallback_interval=fallback
        )
        self._graphs: dict[tuple[Namespace, str, int], GraphSpec] = {}
        self._run_watchers: defaultdict[tuple[Namespace, str], list[asyncio.Future[_Finish | None]]] = defaultdict(list)
        self._cancel_listeners: list[Callable[[Namespace, str], None]] = []
        self._poll_listeners: list[Callable[[Namespace, str], None]] = []
        self._queue_listeners: list[Callable[[Namespace, str, list[str], list[str]], None]] = []
        self._background: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def parked_polls(self) -> int:
        """Worker polls waiting for a task right now."""
        return self._dispatcher.parked

    def worker_departed(self, worker_id: str) -> None:
        """The worker left: end its parked polls and refuse new ones (see TaskDispatcher)."""
        self._dispatcher.worker_departed(worker_id)

    def on_poll(self, listener: Callable[[Namespace, str], None]) -> None:
        """Call `listener(namespace, worker_id)` when a worker polls for a task."""
        self._poll_listeners.append(listener)

    def on_poll_queues(self, listener: Callable[[Namespace, str, list[str], list[str]], None]) -> None:
        """Call `listener(namespace, worker_id, task_queues, graph_keys)` when a worker polls for a task."""
        self._queue_listeners.append(listener)

    def on_cancel_requested(self, listener: Callable[[Namespace, str], None]) -> None:
        """Call `listener(namespace, run_id)` when CancelRun leaves a run for its worker to stop."""
        self._cancel_listeners.append(listener)

    @property
    def limits(self) -> EngineLimits:
        """The limits this engine enforces."""
        return self._limits

    async def start(self) -> None:
        """Start background work: the ready-task and wait sweeps, and the store's push listener.

        They run in a task group the engine owns: one that crashes is logged and stops the others,
        and `wait_background` raises what it raised.
        """
        if self._background is None:
            self._background = asyncio.create_task(self._run_sweeps(), name="cmo-sweeps")

    async def _run_sweeps(self) -> None:
        pushed = OtherServers(self._dispatcher, self._timers, lambda ns, run_id: self._run_finished(ns, run_id, None))
        async with asyncio.TaskGroup() as loops:
            loops.create_task(log_crash("the task sweeps", self._dispatcher.run_sweeps), name="cmo-task-sweeps")
            loops.create_task(log_crash("the wait timers", self._timers.run), name="cmo-wait-timers")
            listen = functools.partial(self._store.watch, pushed)
            loops.create_task(log_crash("the store's push listener", listen), name="cmo-push")

    async def wait_background(self) -> None:
        """Wait while the background work runs: return once `aclose` stops it, raise what crashed it.

        Raises:
            ExceptionGroup: a background loop crashed (and was logged); the others were stopped.
        """
        background = self._background
        if background is not None:
            await asyncio.wait([background])  # not `await background`: a cancelled waiter must not cancel it
            if not background.cancelled() and (crash := background.exception()) is not None:
                raise crash

    async def aclose(self) -> None:
        """Stop taking polls, release parked pollers and watchers, stop the background work; idempotent."""
        self._closed = True
        self._dispatcher.close()
        self._timers.close()
        for futures in self._run_watchers.values():
            for f in futures:
                if not f.done():
                    f.set_result(None)
        background, self._background = self._background, None
        if background is not None:
            background.cancel()
            # A crash was logged as it happened and is raised by `wait_background`, not here.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await background

    # -- graphs -----------------------------------------------------------------------------------

    async def register_graph(self, graph: GraphSpec) -> bool:
        """Register a graph version (validated by the API layer); True if it is new."""
        created = await self._store.register_graph(graph)
        self._graphs[(graph.namespace, graph.graph_id, graph.version)] = graph
        return created

    async def graph(self, namespace: Namespace, graph_id: str, version: int) -> GraphSpec:
        """A registered graph version (0: the newest), cached since versions are immutable."""
        cached = self._graphs.get((namespace, graph_id, version))
        if cached is not None:
            return cached
        graph = await self._store.get_graph(namespace, graph_id, version)
        if graph is None:
            what = f"graph {shown(graph_id)}" + (f" version {version}" if version else "")
            raise NotFound(f"{what} is not registered; start a worker that serves it first")
        self._graphs[(namespace, graph.graph_id, graph.version)] = graph
        return graph

    async def list_graphs(self, namespace: Namespace, *, graph_id: str, limit: int, page_token: str) -> GraphPage:
        """Registered graph versions of a namespace by graph_id then version."""
        return await self._store.list_graphs(namespace, graph_id=graph_id, limit=limit, page_token=page_token)

    async def count_runs_by_graph(self, namespace: Namespace) -> dict[tuple[str, int, RunStatus], int]:
        """How many runs each version of each graph of a namespace has, by status."""
        return await self._store.count_runs_by_graph(namespace)

    async def queue_depths(self, namespace: Namespace) -> dict[str, int]:
        """Ready tasks (visible now, not leased) by task queue of a namespace."""
        return {queue: n for (ns, queue), n in (await self._store.queue_depths()).items() if ns == namespace}

    # -- runs -------------------------------------------------------------------------------------

    async def start_run(
        self,
        namespace: Namespace,
        *,
        run_id: str,
        graph_id: str,
        graph_version: int,
        input: bytes,
        trace_context: dict[str, str] | None = None,
    ) -> tuple[Run, bool]:
        """Create a run and its entry task; idempotent on run_id.

        `trace_context` (W3C headers of the caller's span) goes with every task of the run.
        """
        graph = await self.graph(namespace, graph_id, graph_version)
        state = canonical_payload("input", input or b"{}", self._limits.max_payload_bytes, object_only=True)
        entry = graph.nodes[graph.entry_node]
        # A parked poller gets the entry task in the same transaction that creates it, saving
        # the claim and its round trip (the latency of a short run's first step).
        poller = self._dispatcher.reserve(entry.task_queue, graph.key)
        new_run = NewRun(
            namespace=namespace,
            run_id=run_id or uuid.uuid4().hex,
            graph_id=graph.graph_id,
            graph_version=graph.version,
            input=state,
            seed=secrets.randbits(63),
            entry_node=entry.node_id,
            entry_queue=entry.task_queue,
            lease_to=poller.worker_id if poller is not None else None,
            lease=self._limits.task_lease,
            trace_context=dict(trace_context or {}),
        )
        try:
            run, created = await self._store.create_run(new_run)
        except BaseException:
            if poller is not None:
                self._dispatcher.hand_over(poller, None)
            raise
        if poller is None:
            if created:
                self._dispatcher.notify(entry.task_queue, graph.key)
        elif not created:
            self._dispatcher.hand_over(poller, None)
        elif not self._dispatcher.hand_over(poller, new_run.entry_task(run)):
            # The poll returned meanwhile (it timed out, or claimed another task): give it back.
            with contextlib.suppress(StaleLease):
                await self._store.release_task(TaskKey(namespace, run.run_id, 0, 1, poller.worker_id))
            self._dispatcher.notify(entry.task_queue, graph.key)
        if not created:
            check_same_start(run, graph_id=graph.graph_id, graph_version=graph_version, input=state)
        return run, created

    async def fork_run(
        self,
        namespace: Namespace,
        run_id: str,
        *,
        from_step: int,
        new_run_id: str,
        state: bytes,
        trace_context: dict[str, str] | None = None,
    ) -> tuple[Run, bool]:
        """A new run that shares the source's steps up to `from_step` and goes on from there."""
        source = await self.get_run(namespace, run_id)
        steps = await self._store.get_steps(namespace, run_id, after=from_step - 1, limit=1)
        if not steps or steps[0].step_index != from_step:
            raise InvalidArgument(
                "from_step", f"run {shown(run_id)} has no step {from_step} (it has {source.step_count})"
            )
        step = steps[0]
        if step.next_node == END_NODE:
            raise InvalidArgument("from_step", f"step {from_step} finished the run: fork from an earlier step")
        graph = await self.graph(namespace, source.graph_id, source.graph_version)
        edited = canonical_payload("state", state, self._limits.max_payload_bytes, object_only=True) if state else None
        fork = NewFork(
            namespace=namespace,
            source_run_id=run_id,
            from_step=from_step,
            run_id=new_run_id or uuid.uuid4().hex,
            state=edited,
            state_hash=state_hash(edited) if edited is not None else None,
            next_node=step.next_node,
            next_queue=graph.nodes[step.next_node].task_queue,
            trace_context=dict(trace_context or {}),
        )
        run, created = await self._store.fork_run(fork)
        if created:
            self._dispatcher.notify(fork.next_queue, graph.key)
        else:
            shared = await self._store.get_steps(namespace, run.run_id, after=from_step - 1, limit=1)
            check_same_fork(run, fork, source_state_hash=step.state_hash, shared=shared[0] if shared else None)
        return run, created

    async def terminate_run(self, namespace: Namespace, run_id: str, *, reason: str) -> Run:
        """End a run now as TERMINATED; an ended run is returned as it is."""
        failure = Failure(message=reason or "terminated", type="Terminated", non_retryable=True)
        run = await self._store.terminate_run(namespace, run_id, failure=failure)
        if run is None:
            raise NotFound(f"run {shown(run_id)} does not exist")
        self._run_finished(namespace, run_id, None)
        logger.info("run %s terminated: %s", run_id, failure.message, extra={"run_id": run_id})
        return run

    async def get_run(self, namespace: Namespace, run_id: str) -> Run:
        """One run."""
        run = await self._store.get_run(namespace, run_id)
        if run is None:
            raise NotFound(f"run {shown(run_id)} does not exist")
        return run

    async def list_runs(
        self,
        namespace: Namespace,
        *,
        graph_id: str,
        status: RunStatus | None,
        limit: int,
        page_token: str,
        id_prefix: str = "",
    ) -> RunPage:
        """Runs of a namespace, newest first (with `id_prefix`: those whose id starts with it, in id order)."""
        return await self._store.list_runs(
            namespace, graph_id=graph_id, status=status, limit=limit, page_token=page_token, id_prefix=id_prefix
        )

    async def wait_run(self, namespace: Namespace, run_id: str, *, timeout: float) -> Run:
        """The run once terminal, or as it is when the timeout passes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # Watch before the first read, so a completion between the two is not missed.
        waiter: asyncio.Future[_Finish | None] = loop.create_future()
        watched = (namespace, run_id)
        self._run_watchers[watched].append(waiter)
        try:
            run = await self.get_run(namespace, run_id)
            while not (run.status.terminal or self._closed):
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    finish = await asyncio.wait_for(asyncio.shield(waiter), min(remaining, RUN_RECHECK_SECONDS))
                except TimeoutError:
                    # A run finished by another replica wakes no local waiter: look again.
                    run = await self.get_run(namespace, run_id)
                    continue
                # The step that completed the run says how it ended: no need to read it back.
                return finish(run) if finish is not None else await self.get_run(namespace, run_id)
            return run
        finally:
            watchers = self._run_watchers.get(watched)
            if watchers is not None:
                if waiter in watchers:
                    watchers.remove(waiter)
                if not watchers:
                    del self._run_watchers[watched]

    async def get_history(self, namespace: Namespace, run_id: str, *, after: int, limit: int) -> list[Step]:
        """Checkpoints of a run after step `after`."""
        steps = await self._store.get_steps(namespace, run_id, after=after, limit=limit)
        if not steps and await self._store.get_run(namespace, run_id) is None:
            raise NotFound(f"run {shown(run_id)} does not exist")
        return steps

    # -- tasks ------------------------------------------------------------------------------------

    async def poll_task(
        self,
        namespace: Namespace,
        *,
        worker_id: str,
        task_queues: list[str],
        graphs: list[tuple[str, int]],
        wait: float,
        lease_owner: str = "",
    ) -> Task | None:
        """Lease one task of a namespace, waiting up to `wait` seconds.

        The lease is `lease_owner`'s (default: the worker's id), whom every call about the task
        must then name; the poll listeners hear of `worker_id`.
        """
        owner = lease_owner or worker_id
        for listener in self._poll_listeners:
            listener(namespace, worker_id)
        loop = asyncio.get_running_loop()
        polled_at = loop.time()
        keys = [graph_key(namespace, g, v) for g, v in graphs]
        for polled in self._queue_listeners:
            polled(namespace, worker_id, task_queues, keys)
        while True:
            left = max(0.0, wait - (loop.time() - polled_at))
            task = await self._dispatcher.poll(
                task_queues=task_queues, graph_keys=keys, worker_id=owner, lease=self._limits.task_lease, wait=left
            )
            if task is None or self._gate is None or (denial := self._gate.before_step(_view(task))) is None:
                break
            await self._deny(task, owner, denial)  # and poll again, for what is left of the wait
        self._metrics.poll_waited(loop.time() - polled_at, got_task=task is not None)
        if task is not None:
            self._metrics.task_dispatched(task)
        return task

    async def record_activity(self, key: TaskKey, activity: ActivityRecord) -> ActivityRecord:
        """Record an activity of a running attempt; returns the stored record (first writer wins)."""
        stored = await self._store.record_activity(key, self._checked_activity(activity))
        self._metrics.activity_recorded(key, activity)
        return stored

    def _checked_riding(self, activities: tuple[ActivityRecord, ...]) -> tuple[ActivityRecord, ...]:
        return tuple(self._checked_activity(a, f"activities[{i}]") for i, a in enumerate(activities))

    def _checked_activity(self, activity: ActivityRecord, field: str = "activity") -> ActivityRecord:
        if activity.result is None:
            return activity
        result = canonical_payload(f"{field}.result", activity.result, self._limits.max_payload_bytes)
        return replace(activity, result=result)

    async def heartbeat(self, key: TaskKey) -> tuple[datetime, bool]:
        """Extend the lease of a running attempt; also says whether the run is to be cancelled."""
        return await self._store.extend_lease(key, lease=self._limits.task_lease)

    async def complete_task(self, done: Checkpoint) -> CompleteOutcome:
        """Checkpoint a step and move its run on; may lease the next task to the same worker."""
        graph = await self.graph(done.key.namespace, done.graph_id, done.graph_version)
        if done.node_id not in graph.nodes:
            raise InvalidArgument("task_token.node_id", f"graph {shown(graph.key)} has no node {shown(done.node_id)}")
        next_node = graph.next_node(done.node_id, done.next_key)
        if next_node is None:
            keys = sorted(k for (f, k) in graph.edges if f == done.node_id)
            raise InvalidArgument(
                "next_key", f"node {shown(done.node_id)} has no edge {shown(done.next_key)} (its keys: {shown(keys)})"
            )
        limit = self._limits.max_payload_bytes
        state = canonical_payload("state", done.state, limit, object_only=True)
        output = canonical_payload("output", done.output, limit) if done.output else b""
        next_queue = "" if next_node == END_NODE else graph.nodes[next_node].task_queue
        if self._gate is not None:
            view = StepView(
                done.key.namespace,
                done.key.run_id,
                done.graph_id,
                done.graph_version,
                done.node_id,
                graph.nodes[done.node_id].task_queue,
                done.key.step_index,
                done.key.attempt,
                state,
            )
            if (denial := self._gate.after_step(view, output=output, next_node=next_node)) is not None:
                return await self._refuse_checkpoint(done, denial)
        eager = next_queue in done.eager_task_queues
        outcome = await self._store.complete_step(
            done.resolved(
                state=state,
                state_hash=state_hash(state),
                output=output,
                next_node=next_node,
                next_queue=next_queue,
                eager=eager,
                lease=self._limits.task_lease,
                activities=self._checked_riding(done.activities),
            )
        )
        if outcome.enqueued is not None:
            self._dispatcher.notify(*outcome.enqueued)
        if not outcome.duplicate:
            self._metrics.step_completed(done.graph_id, done.node_id, started_at=done.started_at)
            for activity in done.activities:
                self._metrics.activity_recorded(done.key, activity)
        if (
            outcome.next_task is not None
            and self._gate is not None
            and (denial := self._gate.before_step(_view(outcome.next_task))) is not None
        ):
            failed = await self._deny(outcome.next_task, done.key.worker_id, denial)
            return replace(outcome, next_task=None, run_status=failed.run_status)
        if outcome.next_task is not None:
            self._metrics.task_dispatched(outcome.next_task)
        if outcome.duplicate and eager:
            await self._release_lost_eager_task(done)
        if outcome.run_status.terminal and not outcome.duplicate:
            finished_at = outcome.finished_at
            step_count = done.key.step_index + 1

            def finish(run: Run) -> Run:
                return replace(
                    run,
                    status=RunStatus.COMPLETED,
                    result=state,
                    step_count=step_count,
                    current_node="",
                    updated_at=finished_at or run.updated_at,
                    completed_at=finished_at,
                )

            self._run_finished(done.key.namespace, done.key.run_id, finish)
        return outcome

    async def fail_task(
        self,
        ref: TaskRef,
        *,
        worker_id: str,
        failure: Failure,
        release: bool = False,
        cancelled: bool = False,
        activities: tuple[ActivityRecord, ...] = (),
    ) -> FailOutcome:
        """End an attempt that did not complete: retry it with back-off, release it, or end the run.

        A failure is retried per the node's policy unless the run is being cancelled, which it then
        ends CANCELLED; `cancelled` says the worker stopped for that reason and is refused when
        the run is not being cancelled. The decision, the riding records and its write are one
        store transaction.
        """
        graph = await self.graph(ref.namespace, ref.graph_id, ref.graph_version)
        node = graph.nodes.get(ref.node_id)
        key = ref.key(worker_id)
        if node is None:
            raise StaleLease(key.run_id, key.step_index, key.attempt)
        decide = failure_decider(ref, node, failure, release=release, cancelled=cancelled)
        checked = self._checked_riding(activities)
        task, decision = await self._store.fail_task(key, decide=decide, activities=checked)
        for activity in activities:
            self._metrics.activity_recorded(key, activity)
        queue_key = (task.task_queue, graph_key(task.namespace, task.graph_id, task.graph_version))
        log = {"run_id": key.run_id, "step_index": key.step_index, "attempt": key.attempt}
        if decision.end is AttemptEnd.RELEASE:
            self._dispatcher.notify(*queue_key)
            return FailOutcome(True, timedelta(0), RunStatus.RUNNING)
        if decision.end is AttemptEnd.RETRY:
            delay = decision.delay
            asyncio.get_running_loop().call_later(delay.total_seconds(), self._dispatcher.notify, *queue_key)
            logger.info(
                "step %s of run %s failed (attempt %s), retrying in %.3fs: %s",
                key.step_index,
                key.run_id,
                key.attempt,
                delay.total_seconds(),
                failure.message,
                extra=log,
            )
            return FailOutcome(True, delay, RunStatus.RUNNING)
        self._run_finished(key.namespace, key.run_id, None)
        ended = decision.end is AttemptEnd.CANCEL
        logger.info(
            "run %s %s at step %s after %s failed attempts: %s",
            key.run_id,
            "was cancelled" if ended else "failed",
            key.step_index,
            task.failures + 1,
            failure.message,
            extra=log,
        )
        return FailOutcome(False, timedelta(0), RunStatus.CANCELLED if ended else RunStatus.FAILED)

    async def _deny(self, task: Task, worker_id: str, denial: GateDenial) -> FailOutcome:
        """Fail a step a gate refused to dispatch."""
        ref = TaskRef(
            task.namespace, task.run_id, task.step_index, task.attempt, task.node_id, task.graph_id, task.graph_version
        )
        try:
            return await self._fail_denied(ref, worker_id, denial)
        except StaleLease:  # the run was cancelled or terminated meanwhile: nothing left to fail
            return FailOutcome(False, timedelta(0), RunStatus.FAILED)

    async def _refuse_checkpoint(self, done: Checkpoint, denial: GateDenial) -> CompleteOutcome:
        """Fail, instead of checkpointing, a step whose result a gate refused (its activities are kept)."""
        key = done.key
        ref = TaskRef(
            key.namespace, key.run_id, key.step_index, key.attempt, done.node_id, done.graph_id, done.graph_version
        )
        failed = await self._fail_denied(ref, key.worker_id, denial, done.activities)
        return CompleteOutcome(run_status=failed.run_status)

    async def _fail_denied(
        self, ref: TaskRef, worker_id: str, denial: GateDenial, activities: tuple[ActivityRecord, ...] = ()
    ) -> FailOutcome:
        """A refused step fails at once, whatever its retry policy."""
        failure = denial.failure()
        logger.warning(
            "step %s of run %s refused by the %s gate: %s",
            ref.step_index,
            ref.run_id,
            denial.gate,
            failure.message,
            extra={"run_id": ref.run_id, "step_index": ref.step_index, "policy": denial.policy, "rule": denial.rule},
        )
        return await self.fail_task(ref, worker_id=worker_id, failure=failure, activities=activities)

    # -- waits ------------------------------------------------------------------------------------

    async def suspend_task(
        self, key: TaskKey, wait: WaitRequest, *, activities: tuple[ActivityRecord, ...] = ()
    ) -> WaitOutcome:
        """End an attempt whose node waits for a signal or a timer; the step runs again once it is over."""
        checked = self._checked_riding(activities)
        outcome = await self._store.suspend_task(key, wait, activities=checked)
        for activity in activities:
            self._metrics.activity_recorded(key, activity)
        if outcome.resumed:
            self._dispatcher.notify(*outcome.ready)
        elif outcome.wake_at is not None:
            self._timers.wake_at(outcome.wake_at)
        logger.info(
            "step %s of run %s %s %s %r",
            key.step_index,
            key.run_id,
            "resumed at once from its" if outcome.resumed else "waits for a",
            wait.kind,
            wait.name,
            extra={"run_id": key.run_id, "step_index": key.step_index, "attempt": key.attempt},
        )
        return outcome

    async def signal_run(self, signal: NewSignal) -> SignalOutcome:
        """Deliver a signal to a run, or keep it until the run waits for it."""
        payload = canonical_payload("payload", signal.payload or b"null", self._limits.max_payload_bytes)
        outcome = await self._store.signal_run(replace(signal, payload=payload))
        if outcome is None:
            raise NotFound(f"run {shown(signal.run_id)} does not exist")
        if outcome.ready is not None:
            self._dispatcher.notify(*outcome.ready)
        return outcome

    async def cancel_run(self, namespace: Namespace, run_id: str, *, reason: str) -> Run:
        """Ask a run to stop (cooperatively); an ended run is returned as it is."""
        outcome = await self._store.cancel_run(namespace, run_id, failure=cancelled_failure(reason))
        if outcome is None:
            raise NotFound(f"run {shown(run_id)} does not exist")
        if outcome.ready is not None:
            self._dispatcher.notify(*outcome.ready)
        if outcome.run.status.terminal:
            self._run_finished(namespace, run_id, None)
        else:
            for listener in self._cancel_listeners:
                listener(namespace, run_id)
        logger.info("run %s: cancel requested: %s", run_id, reason or "-", extra={"run_id": run_id})
        return outcome.run

    async def fire_due_waits(self) -> None:
        """End the waits whose time has come and wake pollers for their tasks."""
        for ready in await self._store.fire_due_waits():
            self._dispatcher.notify(*ready)

    async def _release_lost_eager_task(self, done: Checkpoint) -> None:
        """Hand back a next task leased to a worker that never got the reply leasing it.

        A re-sent checkpoint means the first reply may have been lost, eager task included: free
        that task now rather than after its lease lapses.
        """
        key = done.key
        task = await self._store.get_task(key.namespace, key.run_id)
        if task is None or task.step_index != key.step_index + 1 or task.lease_owner != key.worker_id:
            return
        with contextlib.suppress(StaleLease):
            await self._store.release_task(replace(key, step_index=task.step_index, attempt=task.attempt))
            self._dispatcher.notify(task.task_queue, graph_key(task.namespace, task.graph_id, task.graph_version))

    def _run_finished(self, namespace: Namespace, run_id: str, finish: _Finish | None) -> None:
        """Wake the run's waiters; `finish` turns the run they read into the finished one."""
        for waiter in self._run_watchers.get((namespace, run_id), ()):
            if not waiter.done():
                waiter.set_result(finish)


def _view(task: Task) -> StepView:
    return StepView(
        task.namespace,
        task.run_id,
        task.graph_id,
        task.graph_version,
        task.node_id,
        task.task_queue,
        task.step_index,
        task.attempt,
        task.state,
    )
