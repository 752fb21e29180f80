"""Runs through the SDK against an in-process server: retries, failures, eager dispatch, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import pytest

import cmo
from cmo.errors import RpcError, RunFailedError, RunNotFoundError, WaitTimeoutError


@dataclass
class Counter:
    n: int = 0
    trail: tuple[str, ...] = ()


def counting_graph(graph_id: str, steps: int = 3) -> cmo.Graph[Counter]:
    graph: cmo.Graph[Counter] = cmo.Graph(graph_id, state=Counter)
    for i in range(steps):
        last = i == steps - 1

        async def node(
            state: Counter, ctx: cmo.NodeContext, name: str = f"s{i}", last: bool = last
        ) -> cmo.NodeResult[Counter]:
            return cmo.NodeResult(
                replace(state, n=state.n + 1, trail=(*state.trail, name)),
                next=cmo.END if last else "next",
                output={"step": ctx.step_index},
            )

        graph.node(name=f"s{i}", entry=i == 0, edges={} if last else {"next": f"s{i + 1}"})(node)
    return graph


WORKER_CALLS = {"session": True}
"""How `serving`'s workers send their task calls; `both_worker_calls` switches it per test."""


@pytest.fixture(params=["session", "unary"], autouse=True)
def both_worker_calls(request: pytest.FixtureRequest) -> Iterator[None]:
    """Run the test with workers on a worker session, then with unary task calls: both paths alike."""
    WORKER_CALLS["session"] = request.param == "session"
    try:
        yield
    finally:
        WORKER_CALLS["session"] = True


@contextlib.asynccontextmanager
async def serving(client: cmo.Client, graphs: list[cmo.Graph[Any]], **options: Any) -> AsyncIterator[cmo.Worker]:
    worker = cmo.Worker(client, graphs, **{"poll_wait": 1.0, "session": WORKER_CALLS["session"], **options})
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.shutdown()
        await asyncio.wait_for(task, 30)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def run_to_failure(client: cmo.Client, graph: cmo.Graph[Any]) -> tuple[cmo.RunHandle[Any], cmo.FailureInfo]:
    """Start a run of `graph`, serve it until it fails, and return it with its failure."""
    async with serving(client, [graph]):
        handle = await client.start(graph, {})
        with pytest.raises(RunFailedError) as caught:
            await handle.result(timeout=20)
    failure = caught.value.failure
    assert failure is not None
    return handle, failure


async def test_a_run_completes_with_typed_state_and_checkpoints(client: cmo.Client):
    graph = counting_graph(unique("count"))
    async with serving(client, [graph]):
        handle = await client.start(graph, Counter())
        result = await handle.result(timeout=20)
    assert result == Counter(3, ("s0", "s1", "s2"))
    steps = await handle.history()
    assert [(s.step_index, s.node_id, s.attempt) for s in steps] == [(0, "s0", 1), (1, "s1", 1), (2, "s2", 1)]
    assert [s.output for s in steps] == [{"step": 0}, {"step": 1}, {"step": 2}]
    assert steps[-1].next_node == "__end__"
    assert steps[0].next_key == "next"
    info = await handle.describe()
    assert (info.status, info.step_count, info.current_node) == (cmo.RunStatus.COMPLETED, 3, "")


async def test_start_is_idempotent_on_run_id(client: cmo.Client):
    graph = counting_graph(unique("idem"))
    run_id = unique("run")
    first = await client.start(graph, Counter(), run_id=run_id)
    second = await client.start(graph, Counter(), run_id=run_id)
    assert first.run_id == second.run_id == run_id
    # Another input under the same id is another run: refused, the first start stays.
    with pytest.raises(RpcError, match=r"ALREADY_EXISTS: run_id: .* exists with another input"):
        await client.start(graph, Counter(n=5), run_id=run_id)
    async with serving(client, [graph]):
        assert (await second.result(timeout=20)).n == 3
    assert len([r async for r in client.list_runs(graph_id=graph.graph_id)]) == 1


async def test_a_failing_node_is_retried_then_succeeds(client: cmo.Client):
    graph: cmo.Graph[dict[str, Any]] = cmo.Graph(unique("flaky"))
    attempts: list[int] = []

    @graph.node(entry=True, retry=cmo.RetryPolicy(max_attempts=3, initial_interval=timedelta(milliseconds=50)))
    async def flaky(state, ctx):
        attempts.append(ctx.attempt)
        if len(attempts) < 3:
            raise ConnectionError("upstream down")
        return cmo.NodeResult({"ok": True, "attempt": ctx.attempt})

    async with serving(client, [graph]):
        result = await (await client.start(graph, {})).result(timeout=20)
    assert result == {"ok": True, "attempt": 3}
    assert attempts == [1, 2, 3]


async def test_retries_run_out_and_the_run_fails_with_the_error(client: cmo.Client):
    graph: cmo.Graph[dict[str, Any]] = cmo.Graph(unique("doomed"))

    @graph.node(entry=True, retry=cmo.RetryPolicy(max_attempts=2, initial_interval=timedelta(milliseconds=20)))
    async def doomed(state, ctx):
        raise ValueError(f"bad input on attempt {ctx.attempt}")

    handle, failure = await run_to_failure(client, graph)
    assert (failure.type, failure.message, failure.attempt, failure.node_id) == (
        "ValueError",
        "bad input on attempt 2",
        2,
        "doomed",
    )
    assert "Traceback" in failure.details
    assert (await handle.describe()).status is cmo.RunStatus.FAILED
    assert await handle.history() == []


async def test_an_error_with_a_nul_and_a_huge_message_still_fails_the_run_with_it(client: cmo.Client):
    # The server refuses NUL characters and oversized texts; the worker's report must still land.
    graph: cmo.Graph[dict[str, Any]] = cmo.Graph(unique("noisy"))

    @cmo.activity(name="noisy-call", retry=cmo.RetryPolicy(max_attempts=1))
    async def noisy_call() -> None:
        raise ValueError("call\x00failed " + "y" * 10_000)

    @graph.node(entry=True, retry=cmo.RetryPolicy(max_attempts=1))
    async def noisy(state, ctx):
        with contextlib.suppress(cmo.errors.ActivityError):
            await ctx.activity(noisy_call)
        raise cmo.errors.ApplicationError("bad\x00byte " + "x" * 10_000, type="Odd\x00Type")

    _, failure = await run_to_failure(client, graph)
    assert failure.type == "Odd\\x00Type"
    assert failure.message.startswith("bad\\x00byte xxx")
    assert len(failure.message) == 4096
    assert "Traceback" in failure.details


async def test_non_retryable_errors_fail_at_once(client: cmo.Client):
    graph: cmo.Graph[dict[str, Any]] = cmo.Graph(unique("fatal"))
    calls = 0

    @graph.node(entry=True, retry=cmo.RetryPolicy(max_attempts=5, non_retryable_errors=("KeyError",)))
    async def fatal(state, ctx):
        nonlocal calls
        calls += 1
        if state.get("app"):
            raise cmo.errors.ApplicationError("refused", non_retryable=True)
        raise KeyError("missing")

    async with serving(client, [graph]):
        for state in ({}, {"app": True}):
            with pytest.raises(RunFailedError):
                await (await client.start(graph, state)).result(timeout=20)
    assert calls == 2


async def test_an_unknown_edge_key_fails_the_run_clearly(client: cmo.Client):
    graph: cmo.Graph[dict[str, Any]] = cmo.Graph(unique("lost"))

    @graph.node(entry=True, edges={"ok": "other"})
    async def start(state, ctx):
        return cmo.NodeResult(state, next="typo")

    @graph.node
    async def other(state, ctx):
        return cmo.NodeResult(state)

    async with serving(client, [graph]):
        with pytest.raises(RunFailedError, match="next='typo'"):
            await (await client.start(graph, {})).result(timeout=20)


async def test_eager_dispatch_keeps_a_run_on_one_worker(client: cmo.Client):
    graph = counting_graph(unique("eager"), steps=5)
    async with serving(client, [graph], concurrency=1):
        handle = await client.start(graph, Counter())
        assert (await handle.result(timeout=20)).n == 5
    assert all(s.attempt == 1 for s in await handle.history())


async def test_many_runs_on_several_workers_each_step_once(client: cmo.Client):
    graph = counting_graph(unique("many"), steps=4)
    async with serving(client, [graph], concurrency=8), serving(client, [graph], concurrency=8):
        handles = await asyncio.gather(*(client.start(graph, Counter()) for _ in range(60)))
        results = await asyncio.gather(*(h.result(timeout=60) for h in handles))
    assert all(r.n == 4 for r in results)
    for handle in handles[:10]:
        assert [s.step_index for s in await handle.history()] == [0, 1, 2, 3]


async def test_shutdown_hands_back_a_task_that_outlives_the_grace(client: cmo.Client):
    graph: cmo.Graph[dict[str, Any]] = cmo.Graph(unique("slow"))
    started = asyncio.Event()

    @graph.node(entry=True)
    async def slow(state, ctx):
        if ctx.attempt == 1:
            started.set()
            await asyncio.sleep(60)
        return cmo.NodeResult({"attempt": ctx.attempt})

    first = cmo.Worker(client, [graph], poll_wait=1.0, shutdown_grace=0.2, session=WORKER_CALLS["session"])
    running = asyncio.create_task(first.run())
    handle = await client.start(graph, {})
    await asyncio.wait_for(started.wait(), 10)
    first.shutdown()
    await asyncio.wait_for(running, 10)
    # Released, not failed: the next worker takes it at once, well before the lease would lapse.
    async with serving(client, [graph]):
        assert await handle.result(timeout=20) == {"attempt": 2}
    assert (await handle.describe()).failure is None


async def test_waiting_and_missing_runs(client: cmo.Client):
    graph = counting_graph(unique("idle"))
    handle = await client.start(graph, Counter())  # no worker: it stays pending
    with pytest.raises(WaitTimeoutError):
        await handle.result(timeout=0.3)
    assert (await handle.describe()).status is cmo.RunStatus.PENDING
    with pytest.raises(RunNotFoundError):
        await client.get_run("no-such-run")
    with pytest.raises(RunNotFoundError):
        await client.get_history("no-such-run")


async def test_a_waiter_woken_by_the_last_step_sees_the_run_as_stored(client: cmo.Client):
    graph = counting_graph(unique("woken"))
    handle = await client.start(graph, Counter())
    waiting = asyncio.create_task(client.wait(handle.run_id, timeout=20))
    await asyncio.sleep(0.2)  # let the WaitRun park before any step runs
    assert not waiting.done()
    async with serving(client, [graph]):
        woken = await waiting
    stored = await client.get_run(handle.run_id)
    assert woken == stored
    assert (woken.status, woken.step_count, woken.result["n"]) == (cmo.RunStatus.COMPLETED, 3, 3)
    assert woken.completed_at is not None


async def test_execute_starts_and_waits_in_one_call(client: cmo.Client):
    graph = counting_graph(unique("exec"))
    calls: list[str] = []

    def counted(name: str) -> Any:
        real = getattr(client._runs, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return await real(*args, **kwargs)

        return call

    client._runs.StartRun, client._runs.WaitRun = counted("StartRun"), counted("WaitRun")
    async with serving(client, [graph]):
        assert await client.execute(graph, Counter(), timeout=20) == Counter(3, ("s0", "s1", "s2"))
    # No WaitRun: the start itself waited for the end. (A start that raced the worker's
    # registration of the graph is refused and sent again: StartRun may appear twice.)
    assert "WaitRun" not in calls
    assert set(calls) == {"StartRun"}


async def test_execute_raises_what_result_raises(client: cmo.Client):
    idle = counting_graph(unique("idle"))
    with pytest.raises(WaitTimeoutError):
        await client.execute(idle, Counter(), timeout=0.3)  # no worker: still pending when the time is up
    failing: cmo.Graph[dict[str, Any]] = cmo.Graph(unique("fails"))

    @failing.node(entry=True, retry=cmo.RetryPolicy(max_attempts=1))
    async def boom(state: dict[str, Any], ctx: cmo.NodeContext) -> cmo.NodeResult[dict[str, Any]]:
        raise ValueError("no")

    async with serving(client, [failing]):
        with pytest.raises(RunFailedError) as caught:
            await client.execute(failing, {}, timeout=20)
    assert caught.value.failure is not None
    assert caught.value.failure.type == "ValueError"
