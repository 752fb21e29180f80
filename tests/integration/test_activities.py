"""Activities through the SDK: run once, recorded, replayed on retry, checked for nondeterminism."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

import cmo
from cmo.errors import ActivityError, RunFailedError
from cmo.testing import Replayer
from tests.integration.test_runs import both_worker_calls, serving, unique  # noqa: F401 (autouse: both paths)

FAST_RETRY = cmo.RetryPolicy(max_attempts=3, initial_interval=timedelta(milliseconds=20))


@dataclass
class Receipt:
    order: str
    amount: int


async def test_a_retried_step_replays_its_activities_instead_of_running_them(client: cmo.Client):
    charges: list[tuple[str, str]] = []

    @cmo.activity(name="charge")
    async def charge(order: str, amount: int) -> Receipt:
        charges.append((order, cmo.activity_info().idempotency_key))
        return Receipt(order, amount)

    graph: cmo.Graph[dict[str, Any]] = cmo.Graph(unique("pay"))

    @graph.node(entry=True, retry=FAST_RETRY)
    async def pay(state, ctx):
        receipt = await ctx.activity(charge, state["order"], 42)
        assert isinstance(receipt, Receipt)  # converted back to the return annotation, recorded or not
        if ctx.attempt == 1:
            raise ConnectionError("crashed after charging")
        return cmo.NodeResult({**state, "paid": receipt.amount, "attempt": ctx.attempt})

    async with serving(client, [graph]):
        result = await (await client.start(graph, {"order": "o-1"})).result(timeout=20)
    assert result == {"order": "o-1", "paid": 42, "attempt": 2}
    assert len(charges) == 1  # the retry returned the record instead of charging again
    assert charges[0][0] == "o-1"
    assert len(charges[0][1]) == 64


async def test_a_failed_activity_is_run_again_by_the_next_attempt_and_replayed_exactly(client: cmo.Client):
    calls = 0

    @cmo.activity(retry=cmo.RetryPolicy(max_attempts=2, initial_interval=timedelta(milliseconds=10)))
    async def flaky() -> int:
        nonlocal calls
        calls += 1
        raise TimeoutError("upstream timed out")

    graph: cmo.Graph[dict[str, Any]] = cmo.Graph(unique("flaky"))
    seen: list[str] = []

    @graph.node(entry=True, retry=FAST_RETRY)
    async def node(state, ctx):
        try:
            await ctx.activity(flaky)
        except ActivityError as err:
            seen.append(f"{err.type}: {err.message}")
        if ctx.attempt < 3:
            raise RuntimeError("fail the step to force a retry")
        return cmo.NodeResult({"error": seen[-1]})

    async with serving(client, [graph]):
        handle = await client.start(graph, {})
        assert await handle.result(timeout=20) == {"error": "TimeoutError: upstream timed out"}
    assert calls == 6  # its own two tries on each of the step's three attempts: no attempt replayed a failure
    assert seen == ["TimeoutError: upstream timed out"] * 3
    (step,) = await handle.history()
    (recorded,) = step.activities
    assert recorded.error is not None
    assert (recorded.error.type, recorded.attempt) == ("TimeoutError", 3)  # the last attempt's record replaced
    report = await Replayer([graph]).replay(await client.export_history(handle.run_id))
    assert report.ok, report  # replaying the history raises the recorded error again, running nothing
    assert calls == 6


async def test_a_node_retry_replays_recorded_successes_and_runs_recorded_failures_again(client: cmo.Client):
    calls: list[str] = []

    @cmo.activity(name="reserve")
    async def reserve(order: str) -> str:
        calls.append("reserve")
        return f"r-{order}"

    @cmo.activity(name="charge", retry=cmo.RetryPolicy(max_attempts=1))
    async def charge(order: str) -> str:
        calls.append("charge")
        if calls.count("charge") == 1:
            raise ConnectionError("payment service unreachable")
        return f"c-{order}"

    graph: cmo.Graph[dict[str, Any]] = cmo.Graph(unique("mixed"))

    @graph.node(entry=True, retry=FAST_RETRY)
    async def pay(state, ctx):
        reservation = await ctx.activity(reserve, state["order"])
        receipt = await ctx.activity(charge, state["order"])  # raises ActivityError on attempt 1: the node fails
        return cmo.NodeResult({**state, "reservation": reservation, "receipt": receipt, "attempt": ctx.attempt})

    async with serving(client, [graph]):
        handle = await client.start(graph, {"order": "o-7"})
        result = await handle.result(timeout=20)
    assert result == {"order": "o-7", "reservation": "r-o-7", "receipt": "c-o-7", "attempt": 2}
    assert calls == ["reserve", "charge", "charge"]
    (step,) = await handle.history()
    assert [(a.name, a.attempt, a.error is None) for a in step.activities] == [
        ("reserve", 1, True),
        ("charge", 2, True),
    ]
    assert (await Replayer([graph]).replay(await client.export_history(handle.run_id))).ok


async def test_a_path_changed_by_an_activity_run_again_still_replays(client: cmo.Client):
    calls: list[str] = []

    @cmo.activity(name="primary", retry=cmo.RetryPolicy(max_attempts=1))
    async def primary() -> str:
        calls.append("primary")
        if calls.count("primary") == 1:
            raise ConnectionError("primary down")
        return "from primary"

    @cmo.activity(name="fallback", retry=cmo.RetryPolicy(max_attempts=1))
    async def fallback() -> str:
        calls.append("fallback")
        raise ConnectionError("fallback down too")

    graph: cmo.Graph[dict[str, Any]] = cmo.Graph(unique("fallback"))

    @graph.node(entry=True, retry=FAST_RETRY)
    async def fetch(state, ctx):
        try:
            value = await ctx.activity(primary)
        except ActivityError:
            value = await ctx.activity(fallback)  # seq 1, on the first attempt only
        return cmo.NodeResult({"value": value})

    async with serving(client, [graph]):
        handle = await client.start(graph, {})
        assert await handle.result(timeout=20) == {"value": "from primary"}
    assert calls == ["primary", "fallback", "primary"]
    # The first attempt's failed fallback stays in the step's history, which still replays.
    (step,) = await handle.history()
    assert [(a.seq, a.name, a.attempt) for a in step.activities] == [(0, "primary", 2), (1, "fallback", 1)]
    report = await Replayer([graph]).replay(await client.export_history(handle.run_id))
    assert report.ok, report


async def test_a_failure_before_a_wait_is_replayed_when_the_step_resumes(client: cmo.Client):
    calls = 0

    @cmo.activity(retry=cmo.RetryPolicy(max_attempts=1))
    async def lookup() -> str:
        nonlocal calls
        calls += 1
        raise LookupError("not there")

    graph: cmo.Graph[dict[str, Any]] = cmo.Graph(unique("resume"))

    @graph.node(entry=True)
    async def node(state, ctx):
        try:
            found = await ctx.activity(lookup)
        except ActivityError as err:
            found = err.type
        await ctx.sleep(0)  # the step resumes as a new attempt: a resumption, not a retry
        return cmo.NodeResult({"found": found, "attempt": ctx.attempt})

    async with serving(client, [graph]):
        handle = await client.start(graph, {})
        assert await handle.result(timeout=20) == {"found": "LookupError", "attempt": 2}
    assert calls == 1


async def test_concurrent_activities_get_the_same_numbers_on_every_attempt(client: cmo.Client):
    runs: list[str] = []

    @cmo.activity
    async def fetch(name: str, delay: float) -> str:
        await asyncio.sleep(delay)  # finish in the opposite order of the calls
        runs.append(name)
        return name.upper()

    graph: cmo.Graph[dict[str, Any]] = cmo.Graph(unique("fanout"))

    @graph.node(entry=True, retry=FAST_RETRY)
    async def fan(state, ctx):
        got = await asyncio.gather(
            ctx.activity(fetch, "a", 0.06), ctx.activity(fetch, "b", 0.03), ctx.activity(fetch, "c", 0)
        )
        if ctx.attempt == 1:
            raise ConnectionError("retry me")
        return cmo.NodeResult({"got": got})

    async with serving(client, [graph]):
        handle = await client.start(graph, {})
        assert await handle.result(timeout=20) == {"got": ["A", "B", "C"]}
    assert sorted(runs) == ["a", "b", "c"]  # each ran once, on the first attempt only


async def test_a_changed_activity_is_a_nondeterminism_error_naming_the_seq(client: cmo.Client):
    @cmo.activity
    async def send_email(to: str) -> bool:
        return True

    @cmo.activity
    async def send_sms(to: str) -> bool:
        return True

    graph: cmo.Graph[dict[str, Any]] = cmo.Graph(unique("drift"))

    @graph.node(entry=True, retry=cmo.RetryPolicy(max_attempts=5, initial_interval=timedelta(milliseconds=20)))
    async def notify(state, ctx):
        # Code that changes between attempts, as a deploy between a crash and its recovery would.
        await ctx.activity(send_email if ctx.attempt == 1 else send_sms, "ada")
        if ctx.attempt == 1:
            raise ConnectionError("crash")
        return cmo.NodeResult(state)

    async with serving(client, [graph]):
        with pytest.raises(RunFailedError) as failed:
            await (await client.start(graph, {})).result(timeout=20)
    failure = failed.value.failure
    assert failure is not None
    assert failure.type == "NondeterminismError"
    assert failure.attempt == 2  # not retried: no attempt can get past it
    assert "seq 0" in failure.message
    assert "send_email" in failure.message
    assert "send_sms" in failure.message


async def test_activities_outside_a_worker_are_plain_calls():
    @cmo.activity
    async def double(x: int) -> int:
        return 2 * x

    assert await double(21) == 42
    ctx = cmo.NodeContext(
        run_id=uuid.uuid4().hex, step_index=0, attempt=1, node_id="n", graph_id="g", graph_version=1,
        logical_time=__import__("datetime").datetime.now(), seed=1,
    )  # fmt: skip
    with pytest.raises(RuntimeError, match="needs a worker"):
        ctx.activity(double, 1)
