"""Waits: ctx.wait_for_signal and ctx.sleep suspend a step without a worker slot; CancelRun."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

import cmo
from cmo.errors import RpcError, RunCancelledError, RunFailedError, RunNotFoundError, SignalTimeoutError
from cmo.testing import Replayer
from tests.integration.test_runs import both_worker_calls, serving, unique  # noqa: F401 (autouse: both paths)


async def until(handle: cmo.RunHandle[Any], ok: Callable[[cmo.RunInfo], bool], timeout: float = 10) -> cmo.RunInfo:
    """The run once `ok(run)` holds (polled)."""
    deadline = time.monotonic() + timeout
    info = await handle.describe()
    while not ok(info):
        if time.monotonic() > deadline:
            raise AssertionError(f"run {handle.run_id} never got there: {info}")
        await asyncio.sleep(0.02)
        info = await handle.describe()
    return info


async def status_of(handle: cmo.RunHandle[Any], status: cmo.RunStatus, timeout: float = 10) -> cmo.RunInfo:
    """The run once it has `status` (polled)."""
    return await until(handle, lambda info: info.status is status, timeout)


def approval_graph(runs: list[int]) -> cmo.Graph[dict[str, Any]]:
    graph: cmo.Graph[dict[str, Any]] = cmo.Graph(unique("approval"))

    @graph.node(entry=True)
    async def review(state, ctx):
        runs.append(ctx.attempt)
        decision = await ctx.wait_for_signal("approve")
        return cmo.NodeResult({**state, "decision": decision}, next=cmo.END)

    return graph


async def test_a_signal_wakes_the_waiting_step_which_replays_to_its_outcome(client: cmo.Client):
    runs: list[int] = []
    graph = approval_graph(runs)
    async with serving(client, [graph], concurrency=1):
        handle = await client.start(graph, {"doc": 7})
        info = await status_of(handle, cmo.RunStatus.WAITING)
        assert info.waiting is not None
        assert (info.waiting.kind, info.waiting.name, info.waiting.until) == ("signal", "approve", None)
        assert (info.waiting.step_index, info.waiting.seq) == (0, 0)
        assert await handle.signal("approve", {"by": "ann"}) is True
        assert await handle.result(timeout=10) == {"doc": 7, "decision": {"by": "ann"}}
    assert runs == [1, 2]
    (step,) = await handle.history()
    assert step.attempt == 2
    (wait,) = step.activities
    assert (wait.seq, wait.kind, wait.name, wait.result, wait.error) == (0, "signal", "approve", {"by": "ann"}, None)
    assert (await handle.describe()).waiting is None


async def test_the_waiting_step_frees_its_slot_for_other_runs(client: cmo.Client):
    graph = approval_graph([])
    async with serving(client, [graph], concurrency=1):
        first = await client.start(graph, {"n": 1})
        await status_of(first, cmo.RunStatus.WAITING)
        second = await client.start(graph, {"n": 2})
        await status_of(second, cmo.RunStatus.WAITING)  # the one slot took the second run too
        await second.signal("approve", "yes")
        await first.signal("approve", "no")
        assert await first.result(timeout=10) == {"n": 1, "decision": "no"}
        assert await second.result(timeout=10) == {"n": 2, "decision": "yes"}


async def test_a_signal_sent_before_the_wait_is_kept_and_taken_in_order(client: cmo.Client):
    graph: cmo.Graph[dict[str, Any]] = cmo.Graph(unique("inbox"))

    @graph.node(entry=True)
    async def read(state, ctx):
        first = await ctx.wait_for_signal("msg")
        second = await ctx.wait_for_signal("msg")
        return cmo.NodeResult({"got": [first, second]}, next=cmo.END)

    handle = await client.start(graph, {})  # no worker yet: the run is PENDING
    assert await handle.signal("msg", "a", request_id="r1") is False
    assert await handle.signal("msg", "a-again", request_id="r1") is False  # a repeat: ignored
    assert await handle.signal("msg", "b") is False
    async with serving(client, [graph]):
        assert await handle.result(timeout=10) == {"got": ["a", "b"]}


async def test_a_signal_wait_times_out_with_a_recorded_error(client: cmo.Client):
    graph: cmo.Graph[dict[str, Any]] = cmo.Graph(unique("patience"))

    @graph.node(entry=True)
    async def ask(state, ctx):
        try:
            answer = await ctx.wait_for_signal("answer", timeout=0.3)
        except SignalTimeoutError as err:
            answer = f"timed out: {err.name}"
        return cmo.NodeResult({"answer": answer}, next=cmo.END)

    async with serving(client, [graph]):
        handle = await client.start(graph, {})
        info = await status_of(handle, cmo.RunStatus.WAITING)
        assert info.waiting is not None
        assert info.waiting.until is not None
        assert await handle.result(timeout=10) == {"answer": "timed out: answer"}
    (step,) = await handle.history()
    assert step.activities[0].error is not None
    assert step.activities[0].error.type == "SignalTimeoutError"


async def test_a_durable_timer_suspends_the_step_and_fires(client: cmo.Client):
    graph: cmo.Graph[dict[str, Any]] = cmo.Graph(unique("nap"))

    @graph.node(entry=True)
    async def nap(state, ctx):
        await ctx.sleep(0.5)
        await ctx.sleep(0)
        return cmo.NodeResult({"woke": True}, next=cmo.END)

    async with serving(client, [graph]):
        started = time.monotonic()
        handle = await client.start(graph, {})
        info = await status_of(handle, cmo.RunStatus.WAITING)
        assert info.waiting is not None
        assert (info.waiting.kind, info.waiting.name) == ("timer", "")
        assert info.waiting.until is not None
        assert info.waiting.until > info.created_at
        assert await handle.result(timeout=10) == {"woke": True}
        assert time.monotonic() - started >= 0.5
    (step,) = await handle.history()
    assert [(a.seq, a.kind, a.result) for a in step.activities] == [(0, "timer", None), (1, "timer", None)]


async def test_a_replay_returns_the_recorded_waits(client: cmo.Client):
    graph: cmo.Graph[dict[str, Any]] = cmo.Graph(unique("replayed"))

    @graph.node(entry=True)
    async def gate(state, ctx):
        await ctx.sleep(0.1)
        value = await ctx.wait_for_signal("go")
        return cmo.NodeResult({"value": value}, next=cmo.END)

    async with serving(client, [graph]):
        handle = await client.start(graph, {})
        await until(handle, lambda info: info.waiting is not None and info.waiting.kind == "signal")
        await handle.signal("go", 42)
        await handle.result(timeout=10)
    report = await Replayer([graph]).replay(await client.export_history(handle.run_id))
    assert report.ok, report


async def test_cancelling_a_waiting_run_wakes_its_node_which_can_wind_up(client: cmo.Client):
    graph: cmo.Graph[dict[str, Any]] = cmo.Graph(unique("cancel-wait"))
    cleaned: list[str] = []

    @cmo.activity
    async def clean_up(what: str) -> str:
        cleaned.append(what)
        return what

    @graph.node(entry=True)
    async def hold(state, ctx):
        try:
            await ctx.wait_for_signal("never")
        except RunCancelledError:
            await ctx.activity(clean_up, "lock")  # only the first ctx call after the cancel raises
            raise
        return cmo.NodeResult(state, next=cmo.END)

    async with serving(client, [graph]):
        handle = await client.start(graph, {})
        await status_of(handle, cmo.RunStatus.WAITING)
        requested = await handle.cancel(reason="not needed")
        assert requested.cancel_requested
        info = await status_of(handle, cmo.RunStatus.CANCELLED)
    assert cleaned == ["lock"]
    assert info.failure is not None
    assert info.failure.type == "RunCancelledError"
    assert "not needed" in info.failure.message
    with pytest.raises(RunFailedError, match=r"CANCELLED|cancelled"):
        await handle.result(timeout=5)


async def test_cancelling_a_run_nobody_runs_ends_it_at_once(client: cmo.Client):
    graph = approval_graph([])
    handle = await client.start(graph, {})  # no worker: its first step is queued
    info = await handle.cancel(reason="changed my mind")
    assert info.status is cmo.RunStatus.CANCELLED
    assert info.failure is not None
    assert info.failure.message == "changed my mind"
    assert await handle.cancel() == info  # idempotent once ended
    with pytest.raises(RpcError, match="has ended"):
        await handle.signal("approve", 1)
    with pytest.raises(RunNotFoundError):
        await client.cancel("no-such-run")


async def test_a_running_node_sees_the_cancellation_at_its_next_ctx_call(client: cmo.Client):
    graph: cmo.Graph[dict[str, Any]] = cmo.Graph(unique("busy"))
    ticks: list[int] = []
    ticking = asyncio.Event()

    @cmo.activity
    async def tick(n: int) -> int:
        ticks.append(n)
        ticking.set()
        await asyncio.sleep(0.05)
        return n

    @graph.node(entry=True, edges={"again": "work"})
    async def work(state, ctx):
        for n in range(1000):  # heartbeats (every lease/3) carry the cancellation
            await ctx.activity(tick, n)
        return cmo.NodeResult(state, next="again")

    async with serving(client, [graph]):
        handle = await client.start(graph, {})
        await asyncio.wait_for(ticking.wait(), 10)
        await handle.cancel(reason="stop")
        info = await status_of(handle, cmo.RunStatus.CANCELLED)
    assert len(ticks) < 100
    assert info.failure is not None
    assert info.failure.type == "RunCancelledError"
    assert await handle.history() == []


async def test_later_steps_of_a_cancelled_run_do_not_start(client: cmo.Client):
    graph: cmo.Graph[dict[str, Any]] = cmo.Graph(unique("two-steps"))
    release = asyncio.Event()
    second: list[int] = []

    @graph.node(entry=True, edges={"next": "b"})
    async def a(state, ctx):
        await release.wait()  # no ctx call: the node finishes its step regardless
        return cmo.NodeResult(state, next="next")

    @graph.node
    async def b(state, ctx):
        second.append(ctx.step_index)
        return cmo.NodeResult(state, next=cmo.END)

    async with serving(client, [graph]):
        handle = await client.start(graph, {})
        await status_of(handle, cmo.RunStatus.RUNNING)
        await handle.cancel(reason="enough")
        release.set()
        info = await status_of(handle, cmo.RunStatus.CANCELLED)
    assert second == []
    assert info.step_count == 1


async def test_terminating_a_waiting_run_ends_it_and_a_late_signal_is_refused(client: cmo.Client):
    graph = approval_graph([])
    async with serving(client, [graph]):
        handle = await client.start(graph, {})
        await status_of(handle, cmo.RunStatus.WAITING)
        ended = await handle.terminate(reason="gone")
        assert ended.status is cmo.RunStatus.TERMINATED
        assert ended.waiting is None
        with pytest.raises(RpcError, match="has ended"):
            await handle.signal("approve", True)
