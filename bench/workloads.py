"""The workloads: W1 sequential latency (W1A, W1H with activities, W1P against a second server), W2
throughput, W3 per-step overhead, WB the bytes a large unchanged state field costs.

Each takes a connected client (the worker is already serving) and returns the numbers of one
JSON line. Timings are wall clock in the bench process: from just before `client.start` to
just after `handle.result()` returns.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import math
import os
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import cmo
from bench.graphs import (
    BIG_STATE_STEPS,
    CHAIN_STEPS,
    big_state,
    chain,
    three_step,
    three_step_activity,
    three_step_http,
)
from cmo.errors import RpcError

__all__ = [
    "WORKLOADS",
    "Measured",
    "Workload",
    "chain_numbers",
    "percentile",
    "three_step_numbers",
    "w1_compared",
    "wait_until_registered",
]

RESULT_TIMEOUT = 300.0

Measured = Callable[[], AbstractAsyncContextManager[object]]
"""Wraps the measured part of a workload (after its warm-up), e.g. to profile just that."""


def _nothing() -> AbstractAsyncContextManager[object]:
    return nullcontext()


@dataclass(frozen=True, slots=True)
class Workload:
    """One workload and the sizes it runs with."""

    name: str
    description: str
    worker_concurrency: int
    full: dict[str, int]
    quick: dict[str, int]
    run: Callable[..., Awaitable[dict[str, Any]]]
    target: str
    meets: Callable[[dict[str, Any]], bool]
    measured_size: str = "runs"
    """The size `scale` multiplies; the warm-up stays as it is."""
    needs_storage: bool = False
    """`run` takes `storage`, which measures the bytes the server has stored."""
    needs_http: bool = False
    """The worker's nodes call the local HTTP server (bench/http_server.py)."""
    compared: bool = False
    """`run` takes `compared`, a client of a second server and worker that `run.py` starts beside the
    first with authentication and the step gates on (bench/policy_gates.py)."""

    def sizes(self, *, quick: bool = False, scale: float = 1.0) -> dict[str, int]:
        """The keyword arguments of `run`."""
        sizes = dict(self.quick if quick else self.full)
        sizes[self.measured_size] = max(1, round(sizes[self.measured_size] * scale))
        return sizes


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def _latency_stats(latencies: Sequence[float]) -> dict[str, float]:
    return {
        "p50_ms": _ms(percentile(latencies, 50)),
        "p95_ms": _ms(percentile(latencies, 95)),
        "p99_ms": _ms(percentile(latencies, 99)),
        "mean_ms": _ms(statistics.fmean(latencies)),
        "min_ms": _ms(min(latencies)),
        "max_ms": _ms(max(latencies)),
    }


def three_step_numbers(latencies: Sequence[float], elapsed: float, *, warmup: int) -> dict[str, Any]:
    """W1's and W2's numbers from the measured runs' latencies and the wall time they took (seconds)."""
    runs = len(latencies)
    return {
        "n": runs,
        "warmup": warmup,
        "steps_per_run": 3,
        **_latency_stats(latencies),
        "runs_per_s": round(runs / elapsed, 1),
        "steps_per_s": round(3 * runs / elapsed, 1),
        "elapsed_s": round(elapsed, 3),
    }


async def wait_until_registered(client: cmo.Client, timeout: float = 60.0) -> None:
    """Start one run of each bench graph, retrying until the worker has registered them."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    for graph, state in ((three_step, {"n": 1}), (three_step_activity, {"n": 1}), (chain, {"i": 0, "steps": 1})):
        while True:
            try:
                handle = await client.start(graph, state)
                break
            except RpcError as err:
                if err.code != "NOT_FOUND" or loop.time() > deadline:
                    raise
                await asyncio.sleep(0.1)
        await handle.result(timeout=timeout)


async def _three_step_run(
    client: cmo.Client, started: list[float] | None = None, graph: cmo.Graph[Any] = three_step
) -> float:
    """One W1/W2 run; returns its start -> result latency in seconds.

    `started` collects how long `client.start` took (the StartRun round trip).
    """
    t0 = time.perf_counter()
    handle = await client.start(graph, {"n": 100})
    if started is not None:
        started.append(time.perf_counter() - t0)
    result = await handle.result(timeout=RESULT_TIMEOUT)
    elapsed = time.perf_counter() - t0
    if not result.get("done"):
        raise RuntimeError(f"run {handle.run_id} ended without finishing: {result}")
    return elapsed


async def _executed_run(client: cmo.Client) -> float:
    """One W1E run: start and wait in one call (`client.execute`); returns its latency in seconds."""
    t0 = time.perf_counter()
    result = await client.execute(three_step, {"n": 100}, timeout=RESULT_TIMEOUT)
    elapsed = time.perf_counter() - t0
    if not result.get("done"):
        raise RuntimeError(f"a run ended without finishing: {result}")
    return elapsed


async def w1_executed(client: cmo.Client, *, runs: int, warmup: int, measured: Measured = _nothing) -> dict[str, Any]:
    """W1E: W1's runs, each started and awaited with one StartRun (wait_for_result)."""
    for _ in range(warmup):
        await _executed_run(client)
    async with measured():
        t0 = time.perf_counter()
        latencies = [await _executed_run(client) for _ in range(runs)]
        elapsed = time.perf_counter() - t0
    return three_step_numbers(latencies, elapsed, warmup=warmup)


async def w1_sequential(
    client: cmo.Client, *, runs: int, warmup: int, measured: Measured = _nothing, graph: cmo.Graph[Any] = three_step
) -> dict[str, Any]:
    """W1: `runs` runs of the 3-step graph one after another."""
    for _ in range(warmup):
        await _three_step_run(client, graph=graph)
    starts: list[float] = []
    async with measured():
        t0 = time.perf_counter()
        latencies = [await _three_step_run(client, starts, graph) for _ in range(runs)]
        elapsed = time.perf_counter() - t0
    return {**three_step_numbers(latencies, elapsed, warmup=warmup), "start_p50_ms": _ms(percentile(starts, 50))}


async def w1_compared(
    client: cmo.Client,
    *,
    compared: cmo.Client,
    runs: int,
    warmup: int,
    rounds: int,
    measured: Measured = _nothing,
) -> dict[str, Any]:
    """W1P: W1 on two servers in alternating rounds, `client`'s ("off") and `compared`'s ("on").

    Each round makes `runs / rounds` runs on one server, then as many on the other, the first of
    the two changing from round to round, so the machine's drift hits both alike.
    """
    arms = {"off": client, "on": compared}
    for arm_client in arms.values():
        for _ in range(warmup):
            await _three_step_run(arm_client)
    latencies: dict[str, list[float]] = {arm: [] for arm in arms}
    elapsed = dict.fromkeys(arms, 0.0)
    per_round = max(1, runs // rounds)
    async with measured():
        for index in range(rounds):
            for arm in ("off", "on") if index % 2 == 0 else ("on", "off"):
                t0 = time.perf_counter()
                latencies[arm] += [await _three_step_run(arms[arm]) for _ in range(per_round)]
                elapsed[arm] += time.perf_counter() - t0
    numbers = {arm: three_step_numbers(latencies[arm], elapsed[arm], warmup=warmup) for arm in arms}
    return {
        "n": per_round * rounds,
        "warmup": warmup,
        "steps_per_run": 3,
        "rounds": rounds,
        **{f"delta_{q}": round(numbers["on"][q] - numbers["off"][q], 3) for q in ("p50_ms", "p95_ms", "p99_ms")},
        **numbers,
    }


async def w2_concurrent(client: cmo.Client, *, runs: int, warmup: int, measured: Measured = _nothing) -> dict[str, Any]:
    """W2: `runs` runs of the 3-step graph started at once; first start to last result."""
    await asyncio.gather(*(_three_step_run(client) for _ in range(warmup)))
    async with measured():
        t0 = time.perf_counter()
        latencies = await asyncio.gather(*(_three_step_run(client) for _ in range(runs)))
        elapsed = time.perf_counter() - t0
    # The latencies: each run's own start -> result time while all of them compete.
    return three_step_numbers(latencies, elapsed, warmup=warmup)


async def _chain_run(client: cmo.Client) -> float:
    """One W3 run; returns its start -> result time in seconds."""
    t0 = time.perf_counter()
    handle = await client.start(chain, {"i": 0, "steps": CHAIN_STEPS})
    result = await handle.result(timeout=RESULT_TIMEOUT)
    elapsed = time.perf_counter() - t0
    if result.get("i") != CHAIN_STEPS:
        raise RuntimeError(f"run {handle.run_id} stopped at step {result.get('i')}")
    return elapsed


async def w3_long_run(
    client: cmo.Client, *, repeats: int, warmup: int, measured: Measured = _nothing
) -> dict[str, Any]:
    """W3: one run of `CHAIN_STEPS` steps at a time, `repeats` times; total / steps per run."""
    for _ in range(warmup):
        await _chain_run(client)
    async with measured():
        durations = [await _chain_run(client) for _ in range(repeats)]
    return chain_numbers(durations, warmup=warmup)


def chain_numbers(durations: Sequence[float], *, warmup: int) -> dict[str, Any]:
    """W3's numbers from the measured runs' durations (seconds)."""
    per_step = [d / CHAIN_STEPS for d in durations]
    return {
        "n": len(durations),
        "warmup": warmup,
        "steps_per_run": CHAIN_STEPS,
        "ms_per_step": _ms(statistics.median(per_step)),
        "ms_per_step_min": _ms(min(per_step)),
        "ms_per_step_max": _ms(max(per_step)),
        "run_ms": [_ms(d) for d in durations],
        "steps_per_s": round(CHAIN_STEPS * len(durations) / sum(durations), 1),
    }


Storage = Callable[[], dict[str, int]]
"""Measures what the server has stored: blob_files, blob_bytes, database_bytes."""

BIG_FIELD_BYTES = 1024 * 1024


async def wb_big_state(
    client: cmo.Client, *, runs: int, warmup: int, storage: Storage, measured: Measured = _nothing
) -> dict[str, Any]:
    """WB: `runs` runs of `BIG_STATE_STEPS` steps whose state keeps an unchanged 1 MiB field.

    The field is random base64, so neither Postgres's TOAST compression nor anything else can
    shrink an inline copy: the comparison is with what inline storage would really take.
    """
    field = base64.b64encode(os.urandom(BIG_FIELD_BYTES * 3 // 4)).decode()
    before = storage()
    async with measured():
        t0 = time.perf_counter()
        for _ in range(runs):
            handle = await client.start(big_state, {"big": field, "i": 0, "steps": BIG_STATE_STEPS})
            result = await handle.result(timeout=RESULT_TIMEOUT)
            if result != {"big": field, "i": BIG_STATE_STEPS, "steps": BIG_STATE_STEPS}:
                raise RuntimeError(f"run {handle.run_id} came back different")
        elapsed = time.perf_counter() - t0
    after = storage()
    blob_bytes = after["blob_bytes"] - before["blob_bytes"]
    database_bytes = after["database_bytes"] - before["database_bytes"]
    # Inline, the field would be in the input, in every step's state and in the result.
    inline_bytes = runs * (BIG_STATE_STEPS + 2) * (len(field) + 2)
    return {
        "n": runs,
        "warmup": warmup,
        "steps_per_run": BIG_STATE_STEPS,
        "field_bytes": len(field),
        "blob_files": after["blob_files"] - before["blob_files"],
        "blob_bytes": blob_bytes,
        "database_bytes": database_bytes,
        "stored_bytes": blob_bytes + database_bytes,
        "inline_field_bytes": inline_bytes,
        "run_s": round(elapsed / runs, 3),
        "ms_per_step": _ms(elapsed / (runs * BIG_STATE_STEPS)),
    }


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload(
            "W1",
            "sequential runs of a 3-step graph: start -> result latency",
            worker_concurrency=8,
            full={"runs": 300, "warmup": 30},
            quick={"runs": 50, "warmup": 10},
            run=w1_sequential,
            target="p50_ms <= 8",
            meets=lambda r: r["p50_ms"] <= 8,
        ),
        Workload(
            "W1E",
            "W1 through client.execute: start and wait in one call",
            worker_concurrency=8,
            full={"runs": 300, "warmup": 30},
            quick={"runs": 50, "warmup": 10},
            run=w1_executed,
            target="p50_ms <= 8",
            meets=lambda r: r["p50_ms"] <= 8,
        ),
        Workload(
            "W1A",
            "W1 with step 2's computation in a recorded activity: start -> result latency",
            worker_concurrency=8,
            full={"runs": 300, "warmup": 30},
            quick={"runs": 50, "warmup": 10},
            run=functools.partial(w1_sequential, graph=three_step_activity),
            # W1's target plus one Postgres commit at its dearest (0.9 ms on this machine).
            target="p50_ms <= 8.9",
            meets=lambda r: r["p50_ms"] <= 8.9,
        ),
        Workload(
            "W1H",
            "W1 with step 2 making a recorded HTTP request to a local server: start -> result latency",
            worker_concurrency=8,
            full={"runs": 300, "warmup": 30},
            quick={"runs": 50, "warmup": 10},
            run=functools.partial(w1_sequential, graph=three_step_http),
            # W1A's target plus the HTTP call itself on loopback (a new connection per request).
            target="p50_ms <= 10.9",
            meets=lambda r: r["p50_ms"] <= 10.9,
            needs_http=True,
        ),
        Workload(
            "W1P",
            "W1 alternately on a server without and one with authentication (jwt) and the step gates (policies/)",
            worker_concurrency=8,
            full={"runs": 300, "warmup": 30, "rounds": 10},
            quick={"runs": 50, "warmup": 10, "rounds": 5},
            run=w1_compared,
            target="delta_p50_ms <= 0.5 (on - off)",
            meets=lambda r: r["delta_p50_ms"] <= 0.5,
            compared=True,
        ),
        Workload(
            "W2",
            "runs of a 3-step graph started at once, one worker: throughput",
            worker_concurrency=100,
            full={"runs": 500, "warmup": 50},
            quick={"runs": 100, "warmup": 20},
            run=w2_concurrent,
            target="runs_per_s >= 300",
            meets=lambda r: r["runs_per_s"] >= 300,
        ),
        Workload(
            "W3",
            f"one {CHAIN_STEPS}-step run at a time: per-step overhead",
            worker_concurrency=8,
            full={"repeats": 5, "warmup": 1},
            quick={"repeats": 2, "warmup": 1},
            run=w3_long_run,
            target="ms_per_step <= 2.5",
            meets=lambda r: r["ms_per_step"] <= 2.5,
            measured_size="repeats",
        ),
        Workload(
            "WB",
            f"a {BIG_STATE_STEPS}-step run whose state keeps an unchanged 1 MiB field: bytes stored",
            worker_concurrency=8,
            full={"runs": 1, "warmup": 0},
            quick={"runs": 1, "warmup": 0},
            run=wb_big_state,
            target="blob_files == n (the field stored once per run) and stored_bytes <= 5% of inline_field_bytes",
            meets=lambda r: r["blob_files"] == r["n"] and r["stored_bytes"] <= 0.05 * r["inline_field_bytes"],
            needs_storage=True,
        ),
    )
}
