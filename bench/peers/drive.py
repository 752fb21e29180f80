"""W1-W3 for a peer library that runs in this process: the same sizes and numbers as bench/workloads.py.

A peer gives two coroutines: one 3-step run from start to result, one `CHAIN_STEPS`-step run.
Each raises if its run did not end as it should, so a number is never that of a broken run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bench.workloads import WORKLOADS, Measured, chain_numbers, three_step_numbers

__all__ = ["PEER_WORKLOADS", "PeerRuns", "drive"]

PEER_WORKLOADS = ("W1", "W2", "W3")


@dataclass(frozen=True, slots=True)
class PeerRuns:
    """What a peer runs: a 3-step run and a chain run, each from start to its checked result."""

    three_step: Callable[[], Awaitable[None]]
    chain: Callable[[], Awaitable[None]]
    description: str
    """The peer's configuration, for the JSON line: what makes it durable per step."""


async def _timed(run: Callable[[], Awaitable[None]]) -> float:
    t0 = time.perf_counter()
    await run()
    return time.perf_counter() - t0


async def w1_sequential(runs: PeerRuns, *, runs_n: int, warmup: int, measured: Measured) -> dict[str, Any]:
    for _ in range(warmup):
        await runs.three_step()
    async with measured():
        t0 = time.perf_counter()
        latencies = [await _timed(runs.three_step) for _ in range(runs_n)]
        elapsed = time.perf_counter() - t0
    return three_step_numbers(latencies, elapsed, warmup=warmup)


async def w2_concurrent(runs: PeerRuns, *, runs_n: int, warmup: int, measured: Measured) -> dict[str, Any]:
    await asyncio.gather(*(runs.three_step() for _ in range(warmup)))
    async with measured():
        t0 = time.perf_counter()
        latencies = await asyncio.gather(*(_timed(runs.three_step) for _ in range(runs_n)))
        elapsed = time.perf_counter() - t0
    return three_step_numbers(latencies, elapsed, warmup=warmup)


async def w3_long_run(runs: PeerRuns, *, runs_n: int, warmup: int, measured: Measured) -> dict[str, Any]:
    for _ in range(warmup):
        await runs.chain()
    async with measured():
        durations = [await _timed(runs.chain) for _ in range(runs_n)]
    return chain_numbers(durations, warmup=warmup)


_DRIVERS = {"W1": w1_sequential, "W2": w2_concurrent, "W3": w3_long_run}


async def drive(runs: PeerRuns, workload: str, *, quick: bool, measured: Measured) -> dict[str, Any]:
    """Run one of W1-W3 with the sizes bench/workloads.py gives CMO; its numbers."""
    sizes = WORKLOADS[workload].sizes(quick=quick)
    measured_n = sizes.pop(WORKLOADS[workload].measured_size)
    return await _DRIVERS[workload](runs, runs_n=measured_n, warmup=sizes["warmup"], measured=measured)
