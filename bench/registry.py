"""The agent registry under load, on Postgres: many agents beating, and discovery among many.

    uv run python bench/registry.py [--agents 1000] [--seconds 60] [--discover-agents 10000] [--quick]

- `heartbeats`: `--agents` agents registered through a `cmo-server` process, each beating once a
  second (a fixed schedule, spread over the second) for `--seconds`, over 8 channels from this
  process: heartbeat round-trip p50/p95/p99, beats/s achieved, the CPU of the server and of
  Postgres per beat and in cores, and lock waits — `pg_stat_activity` is sampled every 50 ms for
  backends waiting on a lock (`wait_event_type = 'Lock'`), and `pg_locks` for ungranted locks.
- `discover`: `--discover-agents` HEALTHY agents in one namespace, 100 capabilities of 100 agents
  each, and one capability every agent has; Discover (limit 10) p50/p95 for a capability of 100
  agents, for the one of all of them, and with a version constraint (filtered on the server).

Postgres is $CMO_BENCH_POSTGRES_URL or a throwaway cluster. One JSON line per measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import cmo  # noqa: E402
from bench.cpu import CpuMeter  # noqa: E402
from bench.processes import running_server  # noqa: E402
from bench.run import postgres_databases  # noqa: E402
from cmo.registry import AgentStatus, RegistryClient  # noqa: E402

CHANNELS = 8
LOCK_SAMPLE_EVERY = 0.05


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)

    return {"p50_ms": at(0.5), "p95_ms": at(0.95), "p99_ms": at(0.99), "max_ms": round(ordered[-1] * 1000, 3)}


async def _clients(address: str) -> list[cmo.Client]:
    return [await cmo.Client.connect(address) for _ in range(CHANNELS)]


async def _register(registries: list[RegistryClient], count: int, prefix: str, **kwargs: Any) -> list[str]:
    """Register `count` agents (HEALTHY), 64 at a time; their lease ids, in order."""
    leases: list[str] = [""] * count

    async def one(i: int) -> None:
        registry = registries[i % len(registries)]
        registered = await registry.register(f"{prefix}-{i:05d}", status=AgentStatus.HEALTHY, **kwargs)
        leases[i] = registered.lease_id

    for start in range(0, count, 64):
        await asyncio.gather(*(one(i) for i in range(start, min(count, start + 64))))
    return leases


async def _lock_waits(url: str, stop: asyncio.Event) -> dict[str, int]:
    """Samples of backends waiting on a lock, and of ungranted locks, until `stop`."""
    samples = waiting = ungranted = 0
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        while not stop.is_set():
            row = await (
                await conn.execute(
                    """SELECT (SELECT count(*) FROM pg_stat_activity
                                WHERE wait_event_type = 'Lock' AND datname = current_database()),
                              (SELECT count(*) FROM pg_locks WHERE NOT granted)"""
                )
            ).fetchone()
            assert row is not None
            samples += 1
            waiting += int(row[0])
            ungranted += int(row[1])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), LOCK_SAMPLE_EVERY)
    return {"lock_samples": samples, "backends_waiting_on_a_lock": waiting, "ungranted_locks": ungranted}


async def _analyze(url: str) -> None:
    """Statistics as autovacuum keeps them (within a minute of a burst: migration 0012): the steady state."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("ANALYZE agents")
        await conn.execute("ANALYZE agent_capabilities")


async def heartbeats(address: str, server_pid: int, database: Any, url: str, agents: int, seconds: float) -> None:
    clients = await _clients(address)
    registries = [c.registry for c in clients]
    try:
        leases = await _register(registries, agents, "beater", kind="worker", lease=timedelta(seconds=5))
        await _analyze(url)
        latencies: list[float] = []
        failures = 0
        loop = asyncio.get_running_loop()
        began = loop.time() + 0.5
        end = began + seconds

        async def agent(i: int) -> None:
            nonlocal failures
            registry = registries[i % CHANNELS]
            beat_at = began + (i / agents)  # spread over the second
            while beat_at < end:
                await asyncio.sleep(max(0.0, beat_at - loop.time()))
                started = time.perf_counter()
                try:
                    await registry.heartbeat(f"beater-{i:05d}", leases[i], load=random.random())
                except cmo.errors.RpcError:
                    failures += 1
                latencies.append(time.perf_counter() - started)
                beat_at += 1.0

        stop = asyncio.Event()
        locks = asyncio.create_task(_lock_waits(url, stop))
        pids: dict[str, Any] = {"server": server_pid}
        if database is not None:
            pids["database"] = database
        with CpuMeter(pids) as meter:
            await asyncio.gather(*(agent(i) for i in range(agents)))
        stop.set()
        lock_report = await locks
        beats = len(latencies)
        print(
            json.dumps(
                {
                    "measurement": "heartbeats",
                    "agents": agents,
                    "seconds": seconds,
                    "beats": beats,
                    "failed": failures,
                    "beats_per_s": round(beats / seconds, 1),
                    **percentiles(latencies),
                    "cpu_ms_per_beat": {k: round(1000 * v / beats, 3) for k, v in meter.seconds.items()},
                    "cores": {k: round(v / seconds, 3) for k, v in meter.seconds.items()},
                    **lock_report,
                    "target": "heartbeat p99 reported; no lock waits",
                    "meets_target": lock_report["backends_waiting_on_a_lock"] == 0 and failures == 0,
                }
            ),
            flush=True,
        )
    finally:
        for client in clients:
            await client.aclose()


async def discover(address: str, url: str, agents: int, calls: int) -> None:
    clients = await _clients(address)
    registries = [c.registry for c in clients]
    try:

        async def one(i: int) -> None:
            await registries[i % CHANNELS].register(
                f"finder-{i:05d}",
                kind="specialist",
                version=f"1.{i % 10}.0",
                capabilities=[f"cap-{i % 100:02d}", "everyone"],
                lease=timedelta(minutes=30),
                status=AgentStatus.HEALTHY,
            )

        for start in range(0, agents, 64):
            await asyncio.gather(*(one(i) for i in range(start, min(agents, start + 64))))
        await _analyze(url)
        registry = registries[0]
        for name, capability, version, having in (
            (f"capability of {agents // 100} agents", "cap-42", "", agents // 100),
            (f"capability of all {agents} agents", "everyone", "", agents),
            (f"capability of all {agents} agents, version >=1.5,<1.7", "everyone", ">=1.5,<1.7", agents // 5),
        ):
            for _ in range(20):
                await registry.discover(capability, version=version, limit=10)
            samples = []
            for _ in range(calls):
                started = time.perf_counter()
                found = await registry.discover(capability, version=version, limit=10)
                samples.append(time.perf_counter() - started)
            assert len(found) == min(10, having), (name, len(found))
            result = percentiles(samples)
            print(
                json.dumps(
                    {
                        "measurement": "discover",
                        "case": name,
                        "agents": agents,
                        "calls": calls,
                        **result,
                        "target": "p95_ms <= 5",
                        "meets_target": result["p95_ms"] <= 5,
                    }
                ),
                flush=True,
            )
    finally:
        for client in clients:
            await client.aclose()


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp, postgres_databases(Path(tmp)) as databases:
        workdir = Path(tmp)
        with databases("registry-heartbeats") as spec:
            async with running_server(spec, workdir, name="heartbeats") as (address, pid):
                url = spec.env["CMO_DATABASE_URL"]
                await heartbeats(address, pid, spec.database_pids, url, args.agents, args.seconds)
        with databases("registry-discover") as spec:
            async with running_server(spec, workdir, name="discover") as (address, _):
                await discover(address, spec.env["CMO_DATABASE_URL"], args.discover_agents, args.calls)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--discover-agents", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--quick", action="store_true", help="a smoke test: 50 agents for 3 s, 500 to discover")
    args = parser.parse_args(argv)
    if args.quick:
        args.agents, args.seconds, args.discover_agents, args.calls = 50, 3.0, 500, 50
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
