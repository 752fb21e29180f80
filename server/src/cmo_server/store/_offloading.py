"""A `Store` that keeps large payloads in a blob store, transparently for the engine and the wire.

Every payload the engine hands the store (run input and result, step state and output, activity
results, fork state, signal payloads) is canonical JSON; `OffloadingStore` packs each one on the way in (see
`cmo_server.blob.pack`: unchanged up to the threshold, else a manifest over content-addressed
blobs) and unpacks it on the way out. The backends store the packed bytes as opaque values: no
SQL reads inside a payload, so Postgres may copy a packed state from row to row as it is. State
hashes are the engine's, computed over the real content before it gets here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from cmo_server.blob import BlobStore, is_manifest, pack, unpack
from cmo_server.domain import (
    ActivityRecord,
    CancelOutcome,
    Checkpoint,
    CompleteOutcome,
    FailDecider,
    FailDecision,
    Failure,
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
    TaskState,
    WaitOutcome,
    WaitRequest,
)
from cmo_server.store._protocol import ActivityStore, RunPage, RunStore, Store, TaskStore, WaitStore

__all__ = ["PAYLOAD_PROTOCOLS", "OffloadingStore"]

PAYLOAD_PROTOCOLS: tuple[type, ...] = (RunStore, TaskStore, ActivityStore, WaitStore)
"""The store protocols whose calls carry payloads: `OffloadingStore` defines each of their methods."""


def _methods(protocol: type) -> frozenset[str]:
    """The public names a protocol declares, its bases' included."""
    return frozenset(name for name in dir(protocol) if not name.startswith("_"))


_DELEGATED = _methods(Store) - frozenset().union(*map(_methods, PAYLOAD_PROTOCOLS))
"""The `Store` methods that carry no payloads, handed to the inner store as they are."""


class OffloadingStore:
    """Wraps a `Store`: payloads above `threshold` bytes go to `blobs`, the rest stays inline.

    Every method of the `PAYLOAD_PROTOCOLS` is defined here, so a new one cannot slip through
    unpacked (a test checks this). The other calls (graphs, artifacts, metrics, retention, and
    `aclose`, `ping`, `watch`) carry no payloads: `__getattr__` hands them to the inner store as
    they are, and any other name is an AttributeError rather than a reach into the inner store.
    It owns neither the inner store nor the blob store: `aclose` closes only the inner store,
    whoever opened the blob store closes it.
    """

    def __init__(self, inner: Store, blobs: BlobStore, *, threshold: int) -> None:
        if threshold < 0:
            raise ValueError(f"inline threshold must be >= 0, got {threshold}")
        self._inner = inner
        self._blobs = blobs
        self._threshold = threshold

    @property
    def inner(self) -> Store:
        """The store that holds the packed payloads."""
        return self._inner

    def __getattr__(self, name: str) -> Any:
        # Only reached for names the class does not define: the calls without payloads.
        if name in _DELEGATED:
            return getattr(self._inner, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # -- payload helpers --------------------------------------------------------------------------
    # Each checks sizes or the manifest marker first and returns at once when there is nothing to
    # do: the common case must not create tasks (asyncio.gather would) or touch the blob store.

    async def _pack(self, data: bytes) -> bytes:
        return data if len(data) <= self._threshold else await pack(data, self._blobs, self._threshold)

    async def _pack_optional(self, data: bytes | None) -> bytes | None:
        return None if data is None else await self._pack(data)

    async def _unpack(self, stored: bytes) -> bytes:
        return await unpack(stored, self._blobs) if is_manifest(stored) else stored

    async def _unpack_optional(self, stored: bytes | None) -> bytes | None:
        return None if stored is None else await self._unpack(stored)

    async def _pack_activity(self, activity: ActivityRecord) -> ActivityRecord:
        if activity.result is None or len(activity.result) <= self._threshold:
            return activity
        return replace(activity, result=await self._pack(activity.result))

    async def _unpack_activities(self, activities: tuple[ActivityRecord, ...]) -> tuple[ActivityRecord, ...]:
        if not any(a.result is not None and is_manifest(a.result) for a in activities):
            return activities
        return tuple([replace(a, result=await self._unpack_optional(a.result)) for a in activities])

    async def _unpack_run(self, run: Run) -> Run:
        if not is_manifest(run.input) and (run.result is None or not is_manifest(run.result)):
            return run
        input_, result = await asyncio.gather(self._unpack(run.input), self._unpack_optional(run.result))
        return replace(run, input=input_, result=result)

    async def _unpack_step(self, step: Step) -> Step:
        if not is_manifest(step.state) and not is_manifest(step.output):
            activities = await self._unpack_activities(step.activities)
            return step if activities is step.activities else replace(step, activities=activities)
        state, output, activities = await asyncio.gather(
            self._unpack(step.state), self._unpack(step.output), self._unpack_activities(step.activities)
        )
        return replace(step, state=state, output=output, activities=activities)

    async def _unpack_task(self, task: Task) -> Task:
        state = await self._unpack(task.state)
        activities = await self._unpack_activities(task.activities)
        if state is task.state and activities is task.activities:
            return task
        return replace(task, state=state, activities=activities)

    # -- runs -------------------------------------------------------------------------------------

    async def create_run(self, run: NewRun) -> tuple[Run, bool]:
        """See `Store.create_run`; the input is packed."""
        created, new = await self._inner.create_run(replace(run, input=await self._pack(run.input)))
        return await self._unpack_run(created), new

    async def fork_run(self, fork: NewFork) -> tuple[Run, bool]:
        """See `Store.fork_run`; an edited state is packed."""
        forked, new = await self._inner.fork_run(replace(fork, state=await self._pack_optional(fork.state)))
        return await self._unpack_run(forked), new

    async def terminate_run(self, namespace: Namespace, run_id: str, *, failure: Failure) -> Run | None:
        """See `Store.terminate_run`."""
        run = await self._inner.terminate_run(namespace, run_id, failure=failure)
        return None if run is None else await self._unpack_run(run)

    async def get_run(self, namespace: Namespace, run_id: str) -> Run | None:
        """See `Store.get_run`."""
        run = await self._inner.get_run(namespace, run_id)
        return None if run is None else await self._unpack_run(run)

    async def list_runs(
        self,
        namespace: Namespace,
        *,
        graph_id: str = "",
        status: RunStatus | None = None,
        limit: int = 100,
        page_token: str = "",
        id_prefix: str = "",
    ) -> RunPage:
        """See `Store.list_runs`."""
        runs, token = await self._inner.list_runs(
            namespace, graph_id=graph_id, status=status, limit=limit, page_token=page_token, id_prefix=id_prefix
        )
        return [await self._unpack_run(r) for r in runs], token

    async def get_steps(self, namespace: Namespace, run_id: str, *, after: int = -1, limit: int = 1000) -> list[Step]:
        """See `Store.get_steps`."""
        steps = await self._inner.get_steps(namespace, run_id, after=after, limit=limit)
        return [await self._unpack_step(s) for s in steps]

    # -- tasks ------------------------------------------------------------------------------------

    async def claim_task(
        self, *, task_queues: Sequence[str], graph_keys: Sequence[str], worker_id: str, lease: timedelta
    ) -> Task | None:
        """See `Store.claim_task`."""
        task = await self._inner.claim_task(
            task_queues=task_queues, graph_keys=graph_keys, worker_id=worker_id, lease=lease
        )
        return None if task is None else await self._unpack_task(task)

    async def ready_queues(self, task_queues: Sequence[str]) -> set[tuple[str, str]]:
        """See `Store.ready_queues`."""
        return await self._inner.ready_queues(task_queues)

    async def next_ready_at(self, task_queues: Sequence[str]) -> datetime | None:
        """See `Store.next_ready_at`."""
        return await self._inner.next_ready_at(task_queues)

    async def extend_lease(self, key: TaskKey, *, lease: timedelta) -> tuple[datetime, bool]:
        """See `Store.extend_lease`."""
        return await self._inner.extend_lease(key, lease=lease)

    async def complete_step(self, commit: Checkpoint) -> CompleteOutcome:
        """See `Store.complete_step`; state, output and riding activity results are packed."""
        state = await self._pack(commit.state)
        output = await self._pack(commit.output)
        activities = tuple([await self._pack_activity(a) for a in commit.activities])
        if state is commit.state and output is commit.output and activities == commit.activities:
            outcome = await self._inner.complete_step(commit)
        else:
            outcome = await self._inner.complete_step(
                replace(commit, state=state, output=output, activities=activities)
            )
        if outcome.next_task is None:
            return outcome
        next_task = outcome.next_task
        if state is not commit.state and next_task.state == state:
            # The eager next task starts from the state just packed: no need to read it back.
            next_task = replace(next_task, state=commit.state)
        return replace(outcome, next_task=await self._unpack_task(next_task))

    async def record_activity(self, key: TaskKey, activity: ActivityRecord) -> ActivityRecord:
        """See `Store.record_activity`; the result is packed."""
        packed = await self._pack_activity(activity)
        stored = await self._inner.record_activity(key, packed)
        if stored.result is None or not is_manifest(stored.result):
            return stored
        if stored.result == packed.result:
            return replace(stored, result=activity.result)  # this record won: it holds our payload
        return replace(stored, result=await self._unpack(stored.result))

    async def get_task(self, namespace: Namespace, run_id: str) -> TaskState | None:
        """See `Store.get_task`."""
        return await self._inner.get_task(namespace, run_id)

    async def release_task(self, key: TaskKey) -> None:
        """See `Store.release_task`."""
        await self._inner.release_task(key)

    async def fail_task(
        self, key: TaskKey, *, decide: FailDecider, activities: tuple[ActivityRecord, ...] = ()
    ) -> tuple[TaskState, FailDecision]:
        """See `Store.fail_task`; riding activity results are packed."""
        packed = tuple([await self._pack_activity(a) for a in activities])
        return await self._inner.fail_task(key, decide=decide, activities=packed)

    # -- waits: a signal's payload becomes the wait's recorded result -----------------------------

    async def suspend_task(
        self, key: TaskKey, wait: WaitRequest, *, activities: tuple[ActivityRecord, ...] = ()
    ) -> WaitOutcome:
        """See `Store.suspend_task`; riding activity results are packed."""
        packed = tuple([await self._pack_activity(a) for a in activities])
        return await self._inner.suspend_task(key, wait, activities=packed)

    async def signal_run(self, signal: NewSignal) -> SignalOutcome | None:
        """See `Store.signal_run`; the payload is packed."""
        outcome = await self._inner.signal_run(replace(signal, payload=await self._pack(signal.payload)))
        return None if outcome is None else replace(outcome, run=await self._unpack_run(outcome.run))

    async def cancel_run(self, namespace: Namespace, run_id: str, *, failure: Failure) -> CancelOutcome | None:
        """See `Store.cancel_run`."""
        outcome = await self._inner.cancel_run(namespace, run_id, failure=failure)
        return None if outcome is None else replace(outcome, run=await self._unpack_run(outcome.run))

    async def fire_due_waits(self) -> set[tuple[str, str]]:
        """See `Store.fire_due_waits`."""
        return await self._inner.fire_due_waits()

    async def next_wait_at(self) -> datetime | None:
        """See `Store.next_wait_at`."""
        return await self._inner.next_wait_at()
