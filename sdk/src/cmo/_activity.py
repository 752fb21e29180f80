"""Activities: side effects a node makes through `ctx.activity`, recorded once and replayed after.

A step's activities are numbered by `seq` in the order the node calls `ctx.activity` (the number is
taken at the call, before anything is awaited, so `asyncio.gather` of several gets the same numbers
on every attempt). The first attempt runs each one, with its own retries and timeout, and records
the outcome on the server (durable before the next activity starts or the step ends); a retried
or recovered attempt gets the records with its task and returns them instead of running the
activity again, except the failures a node retry runs again (`replayed_records` says which).
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import time
import traceback
import typing
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Generic, ParamSpec, TypeVar, overload

from opentelemetry import trace
from opentelemetry.trace import StatusCode, Tracer

from cmo._converter import from_json, to_json
from cmo._retry import RetryPolicy
from cmo.api.v1 import common_pb2, worker_service_pb2
from cmo.errors import (
    ActivityError,
    ApplicationError,
    HttpStatusError,
    NondeterminismError,
    RunCancelledError,
    SignalTimeoutError,
)
from cmo.serialization import canonical_json, parse_json, state_hash

__all__ = [
    "Activity",
    "ActivityInfo",
    "ActivityRunner",
    "Suspend",
    "activity",
    "activity_info",
    "replayed_records",
    "wire_failure",
]

P = ParamSpec("P")
T = TypeVar("T")

KIND_CALL = "call"
"""The kind of a user-defined activity."""
KIND_SIGNAL = "signal"
"""The kind of a wait for a signal; the server records its outcome."""
KIND_TIMER = "timer"
"""The kind of a durable timer; the server records its outcome."""
WAIT_KINDS = (KIND_SIGNAL, KIND_TIMER)
MAX_FAILURE_MESSAGE = 4096
MAX_FAILURE_TYPE = 256
MAX_FAILURE_DETAILS = 65536
"""The server's limits (characters) on a Failure's message, type and details."""


class Suspend(BaseException):
    """Unwinds a node that waits for a signal or a timer not yet over: the step is suspended.

    A BaseException, so node code's `except Exception` does not swallow it. The worker ends the
    attempt with SuspendTask; the server runs the step again once the wait is over, and the wait
    then returns its recorded outcome.
    """

    def __init__(self, wait: worker_service_pb2.WaitRequest) -> None:
        super().__init__(f"waiting for {wait.kind} {wait.name!r}" if wait.name else f"waiting for a {wait.kind}")
        self.wait = wait


@dataclass(frozen=True, slots=True)
class ActivityInfo:
    """What an activity may know about the call it is running for."""

    run_id: str
    step_index: int
    seq: int
    idempotency_key: str
    """Stable across retries, recoveries and replays of this call: pass it on to external systems."""
    try_number: int
    """1 for the first try; more when the activity's own retry policy tries again."""


_current: contextvars.ContextVar[ActivityInfo] = contextvars.ContextVar("cmo_activity_info")


def activity_info() -> ActivityInfo:
    """The running activity's info (inside an activity called through `ctx.activity`).

    Raises:
        RuntimeError: not inside an activity.
    """
    try:
        return _current.get()
    except LookupError:
        raise RuntimeError("activity_info() is only available inside an activity run by ctx.activity") from None


@dataclass(frozen=True, slots=True)
class Activity(Generic[P, T]):
    """An async function declared as an activity: its name, retry policy and timeout."""

    fn: Callable[P, Awaitable[T]]
    name: str
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(max_attempts=3))
    timeout: timedelta | None = None
    """Per try; None means no limit."""
    kind: str = KIND_CALL
    """What kind of side effect it is, as recorded ("call" for user-defined activities)."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Awaitable[T]:
        """Call the function directly: not recorded (use `ctx.activity` inside nodes)."""
        return self.fn(*args, **kwargs)

    result_type: Any = field(init=False, repr=False, compare=False)
    """The function's return annotation: results are converted back to it, recorded or not."""

    def __post_init__(self) -> None:
        try:
            hint = typing.get_type_hints(self.fn).get("return", Any)
        except (NameError, TypeError):
            hint = Any
        object.__setattr__(self, "result_type", hint)


@overload
def activity(fn: Callable[P, Awaitable[T]], /) -> Activity[P, T]: ...


@overload
def activity(
    fn: None = None, /, *, name: str | None = None, retry: RetryPolicy | None = None, timeout: timedelta | None = None
) -> Callable[[Callable[P, Awaitable[T]]], Activity[P, T]]: ...


def activity(
    fn: Callable[P, Awaitable[T]] | None = None,
    /,
    *,
    name: str | None = None,
    retry: RetryPolicy | None = None,
    timeout: timedelta | None = None,
) -> Activity[P, T] | Callable[[Callable[P, Awaitable[T]]], Activity[P, T]]:
    """Declare an async function as an activity; call it in a node with `ctx.activity(fn, ...)`.

    Args:
        fn: The async function; its arguments and result go through the state converter.
        name: Recorded name; the function's qualified name by default. Keep it stable: replay
            compares it.
        retry: Tries before the outcome is recorded (default 3, 1 s back-off doubling).
        timeout: Limit of each try.
    """

    def wrap(f: Callable[P, Awaitable[T]]) -> Activity[P, T]:
        return Activity(f, name or f.__qualname__, retry or RetryPolicy(max_attempts=3), timeout)

    return wrap(fn) if fn is not None else wrap


Recorder = Callable[[common_pb2.Activity], Awaitable[common_pb2.Activity]]


def replayed_records(records: Iterable[common_pb2.Activity], *, attempt: int) -> dict[int, common_pb2.Activity]:
    """The records of a step that its attempt `attempt` replays, by seq: all but the failures it runs again.

    A node retry runs the node again: a recorded success is returned as recorded, but an activity
    that failed for good (its own retries spent) in an earlier attempt runs again, under the same
    idempotency key, and its new record replaces the old one on the server. Not so after a wait:
    the step resumes as a new attempt, which replays everything before the wait as it was, failures
    included, so the attempts that ended in a wait (their waits' records name them) are replayed
    whole. Waits' outcomes and cancellations are facts, not failures: always replayed.

    Args:
        records: The records the task carries (of earlier attempts).
        attempt: The attempt about to run.
    """
    records = list(records)
    suspended = {r.attempt for r in records if r.kind in WAIT_KINDS}

    def runs_again(record: common_pb2.Activity) -> bool:
        return (
            record.HasField("error")
            and record.kind not in WAIT_KINDS
            and record.error.type != RunCancelledError.__name__
            and record.attempt < attempt
            and record.attempt not in suspended
        )

    return {r.seq: r for r in records if not runs_again(r)}


class ActivityRunner:
    """Runs or replays the activities of one step attempt (made by the worker for each task).

    A new record is sent to the server at once, in the background, and the node goes on with its
    result; records not yet confirmed also ride on the step's CompleteTask or FailTask (the server
    keeps the first record of a seq). Before the next activity starts, every earlier record is
    confirmed durable. So a node with one activity pays no extra round trip, and only the activity
    just finished or in flight at a crash can run twice.
    """

    def __init__(
        self,
        *,
        run_id: str,
        step_index: int,
        recorded: Mapping[int, common_pb2.Activity],
        record: Recorder | None,
        tracer: Tracer | None = None,
        namespace: str = "default/default",
    ) -> None:
        """Make the runner of one attempt.

        Args:
            run_id: The run.
            step_index: The step.
            recorded: The step's records from earlier attempts, by seq.
            record: Sends one record to the server; None replays only (an activity the record
                does not have is a nondeterminism error, and nothing runs).
            tracer: Makes a `cmo.activity` span of each activity run (not of replayed ones); the
                global provider's by default.
            namespace: The run's namespace, "tenant/project": part of every idempotency key, as
                run ids repeat across namespaces.
        """
        self._namespace = namespace
        self._run_id = run_id
        self._step_index = step_index
        self._recorded = dict(recorded)
        self._record = record
        self._next_seq = 0
        self._unconfirmed: dict[int, common_pb2.Activity] = {}
        self._sending: set[asyncio.Task[None]] = set()
        self._cancel_reason: str | None = None
        self._cancel_delivered = False
        self._tracer = tracer or trace.get_tracer("cmo")

    @property
    def cancel_requested(self) -> bool:
        """CancelRun was called for the run (as far as this worker has heard)."""
        return self._cancel_reason is not None or self._cancel_delivered

    def request_cancel(self, reason: str = "") -> None:
        """The run is to stop: the next call not recorded yet raises RunCancelledError (recorded).

        Only that one call raises, so a node that catches the error can still run activities to
        wind up before it raises the error again.
        """
        if self._cancel_reason is None:
            self._cancel_reason = reason

    def _cancel_pending(self) -> bool:
        return self._cancel_reason is not None and not self._cancel_delivered

    def _deliver_cancel(self, reason: str) -> RunCancelledError:
        self._cancel_delivered = True
        return RunCancelledError(reason)

    @property
    def calls(self) -> int:
        """Activity calls the node has made so far."""
        return self._next_seq

    def unconfirmed(self) -> list[common_pb2.Activity]:
        """Records the server has not confirmed yet: they ride on the step's next request."""
        return [self._unconfirmed[seq] for seq in sorted(self._unconfirmed)]

    def close(self) -> None:
        """Stop background sends (the records went with the step's last request)."""
        for sending in self._sending:
            sending.cancel()

    def start(self, act: Activity[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Awaitable[T]:
        """Number the call now (deterministic order), run or replay it when awaited."""
        seq = self._next_seq
        self._next_seq += 1
        return self._run(seq, act, args, kwargs)

    async def _run(self, seq: int, act: Activity[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        request_hash = state_hash(canonical_json(to_json([list(args), kwargs])))
        recorded = self._recorded_call(seq, act.kind, act.name, request_hash)
        if recorded is not None:
            return self._outcome(recorded, act)
        record = common_pb2.Activity(seq=seq, kind=act.kind, name=act.name, request_hash=request_hash)
        if self._cancel_pending():
            return self._cancelled(record)
        await self._confirm_all()  # earlier outcomes are durable before this side effect starts
        attributes: dict[str, str | int] = {"cmo.activity.name": act.name, "cmo.activity.kind": act.kind}
        attributes["cmo.activity.seq"] = seq
        with self._tracer.start_as_current_span(
            "cmo.activity", attributes=attributes, record_exception=False, set_status_on_exception=False
        ) as span:
            started = time.perf_counter()
            try:
                result = await self._execute(seq, act, args, kwargs)
                record.result = canonical_json(to_json(result))
            except Exception as err:
                record.error.CopyFrom(_failure(err))
                span.record_exception(err)
                span.set_status(StatusCode.ERROR, f"{record.error.type}: {record.error.message}")
            record.duration.FromTimedelta(timedelta(seconds=time.perf_counter() - started))
        self._keep(record)
        return self._outcome(record, act)

    def wait(self, kind: str, name: str, duration: timedelta | None) -> Awaitable[bytes]:
        """Number a wait now (like an activity); when awaited, its recorded result or a `Suspend`."""
        seq = self._next_seq
        self._next_seq += 1
        return self._wait(seq, kind, name, duration)

    async def _wait(self, seq: int, kind: str, name: str, duration: timedelta | None) -> bytes:
        seconds = None if duration is None else duration.total_seconds()
        request_hash = state_hash(canonical_json([kind, name, seconds]))
        recorded = self._recorded_call(seq, kind, name, request_hash)
        if recorded is not None:
            if recorded.HasField("error"):
                raise self._wait_error(recorded, name)
            return recorded.result
        if self._cancel_pending():
            self._cancelled(common_pb2.Activity(seq=seq, kind=kind, name=name, request_hash=request_hash))
        wait = worker_service_pb2.WaitRequest(seq=seq, kind=kind, name=name, request_hash=request_hash)
        if duration is not None:
            wait.duration.FromTimedelta(duration)
        raise Suspend(wait)

    def _recorded_call(self, seq: int, kind: str, name: str, request_hash: str) -> common_pb2.Activity | None:
        """The record of call `seq` if there is one (it must be this call), else None to run it.

        Raises:
            NondeterminismError: another call was recorded at `seq`, or (replaying only) none was.
        """
        recorded = self._recorded.get(seq)
        requested = f"{kind} {name!r} (request {request_hash[:12]})"
        if recorded is None:
            if self._record is None:
                raise NondeterminismError(step_index=self._step_index, seq=seq, recorded="nothing", requested=requested)
            return None
        if (recorded.kind, recorded.name, recorded.request_hash) != (kind, name, request_hash):
            raise NondeterminismError(
                step_index=self._step_index,
                seq=seq,
                recorded=f"{recorded.kind} {recorded.name!r} (request {recorded.request_hash[:12]})",
                requested=requested,
            )
        _replayed(recorded)
        return recorded

    def _cancelled(self, record: common_pb2.Activity) -> typing.NoReturn:
        """Record the cancellation as this call's outcome (so a replay raises it here too) and raise it."""
        reason = self._cancel_reason or ""
        record.error.CopyFrom(common_pb2.Failure(message=reason or "cancelled", type=RunCancelledError.__name__))
        self._keep(record)
        raise self._deliver_cancel(reason)

    def _outcome(self, record: common_pb2.Activity, act: Activity[..., T]) -> T:
        if record.HasField("error"):
            if record.error.type == RunCancelledError.__name__:
                raise self._deliver_cancel(record.error.message)
            raise _activity_error(act.name, record.seq, record.error)
        return typing.cast(T, from_json(parse_json(record.result), act.result_type))

    def _wait_error(self, record: common_pb2.Activity, name: str) -> Exception:
        if record.error.type == RunCancelledError.__name__:
            return self._deliver_cancel(record.error.message)
        if record.error.type == SignalTimeoutError.__name__:
            return SignalTimeoutError(name)
        return ActivityError(name or record.kind, record.seq, record.error.type, record.error.message)

    def _keep(self, record: common_pb2.Activity) -> None:
        """Send a new record in the background; until confirmed it also rides on the step's next request."""
        self._unconfirmed[record.seq] = record
        sending = asyncio.create_task(self._send(record))
        self._sending.add(sending)
        sending.add_done_callback(self._sending.discard)

    async def _send(self, record: common_pb2.Activity) -> None:
        assert self._record is not None
        try:
            await self._record(record)
        except asyncio.CancelledError:
            raise
        except BaseException:
            return
        self._unconfirmed.pop(record.seq, None)

    async def _confirm_all(self) -> None:
        if self._sending:
            await asyncio.wait(list(self._sending))
        assert self._record is not None
        for seq in sorted(self._unconfirmed):
            await self._record(self._unconfirmed[seq])
            self._unconfirmed.pop(seq, None)

    async def _execute(self, seq: int, act: Activity[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        key = hashlib.sha256(f"{self._namespace}:{self._run_id}:{self._step_index}:{seq}".encode()).hexdigest()
        delay = act.retry.initial_interval.total_seconds()
        try_number = 1
        span = trace.get_current_span()
        while True:
            span.set_attribute("cmo.activity.try_count", try_number)
            token = _current.set(ActivityInfo(self._run_id, self._step_index, seq, key, try_number))
            try:
                call = act.fn(*args, **kwargs)
                timeout = act.timeout.total_seconds() if act.timeout is not None else None
                return await asyncio.wait_for(call, timeout)
            except Exception as err:
                if not _retryable(err, act.retry, try_number):
                    raise
            finally:
                _current.reset(token)
            await asyncio.sleep(delay)
            delay *= act.retry.backoff
            if act.retry.max_interval is not None:
                delay = min(delay, act.retry.max_interval.total_seconds())
            try_number += 1


def _replayed(record: common_pb2.Activity) -> None:
    """Mark on the step's span that a call returned its recorded outcome instead of running."""
    trace.get_current_span().add_event(
        "cmo.activity.replayed",
        {"cmo.activity.name": record.name, "cmo.activity.kind": record.kind, "cmo.activity.seq": record.seq},
    )


def _retryable(err: Exception, retry: RetryPolicy, try_number: int) -> bool:
    if isinstance(err, ApplicationError) and err.non_retryable:
        return False
    if type(err).__name__ in retry.non_retryable_errors:
        return False
    return retry.max_attempts == 0 or try_number < retry.max_attempts


def _failure(err: Exception) -> common_pb2.Failure:
    details = "".join(traceback.format_exception(err))[-8000:]
    if isinstance(err, ActivityError):  # an activity's failure already (HttpStatusError): recorded as it says
        return wire_failure(err.message, err.type, details=details)
    kind = err.type if isinstance(err, ApplicationError) else type(err).__name__
    return wire_failure(str(err) or kind, kind, details=details)


def wire_failure(message: str, kind: str, *, non_retryable: bool = False, details: str = "") -> common_pb2.Failure:
    """A Failure the server takes: each text within its limit, NUL characters written out.

    The server refuses a NUL in any text and longer texts; an error's report must not be lost
    for them, so the message and type keep their heads and the details (a traceback) its tail.
    """
    return common_pb2.Failure(
        message=_nul_escaped(message)[:MAX_FAILURE_MESSAGE],
        type=_nul_escaped(kind)[:MAX_FAILURE_TYPE],
        non_retryable=non_retryable,
        details=_nul_escaped(details)[-MAX_FAILURE_DETAILS:],
    )


def _nul_escaped(text: str) -> str:
    return text.replace("\x00", "\\x00")


def _activity_error(name: str, seq: int, failure: common_pb2.Failure) -> ActivityError:
    """The error a recorded failure raises: the same on the attempt that recorded it and on replay."""
    if failure.type == HttpStatusError.__name__:
        rebuilt = HttpStatusError.from_message(name, seq, failure.message)
        if rebuilt is not None:
            return rebuilt
    return ActivityError(name, seq, failure.type, failure.message)
