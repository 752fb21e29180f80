"""CMO beside DBOS and LangGraph on W1-W3, on one throwaway Postgres, in one run; one table of ratios at the end.

CMO runs on that Postgres and, as `cmo-sqlite`, on its embedded dev server (a SQLite file). Each
repetition first measures the floor of a durable step (bench/floor.py) on the same cluster.

    uv run --group bench-peers python -m bench.peers.run [--system cmo|cmo-sqlite|dbos|langgraph|all]
        [--workload W1|W2|W3|all] [--repeat N] [--quick]                        # `make bench-peers`

CMO runs exactly as bench/run.py runs it (its own server and worker processes, the client here);
DBOS and LangGraph are libraries and run in this process. Every (system, workload) pair gets its own
fresh database on the same cluster ($CMO_BENCH_POSTGRES_URL, or a throwaway cluster made with
tests/support/postgres.py), dropped afterwards. One JSON line per pair on stdout, then one line with
the table; progress and the table in text on stderr. See "Peers" in bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from bench.cpu import CpuMeter, calibrate
from bench.floor import measure_floor
from bench.peers.dbos_peer import running_dbos
from bench.peers.drive import PEER_WORKLOADS, PeerRuns, drive
from bench.peers.langgraph_peer import running_langgraph
from bench.run import (
    environment,
    log,
    machine_numbers,
    measure,
    postgres_databases,
    postgres_processes,
    sqlite_databases,
)
from bench.workloads import WORKLOADS
from tests.support.postgres import create_database, drop_database, throwaway_postgres

PEERS: dict[str, Callable[[str], AbstractAsyncContextManager[PeerRuns]]] = {
    "dbos": running_dbos,
    "langgraph": running_langgraph,
}
SYSTEMS_OF_CMO = ("cmo", "cmo-sqlite")
"""CMO on Postgres (the peers' database) and its embedded dev server on SQLite."""
SYSTEMS = (*SYSTEMS_OF_CMO, *PEERS)
METRICS = (
    ("W1", "p50_ms", "lower"),
    ("W1", "p95_ms", "lower"),
    ("W1", "p99_ms", "lower"),
    ("W2", "runs_per_s", "higher"),
    ("W3", "ms_per_step", "lower"),
)
"""The numbers the table compares, per workload, and which way is better."""


async def run_peer(system: str, database_url: str, workload: str, *, quick: bool) -> dict[str, Any]:
    """One workload on a peer library in this process: its numbers (CPU: `client` is this process)."""
    async with PEERS[system](database_url) as runs:
        load_before = round(os.getloadavg()[0], 2)
        calibration = calibrate()
        database = postgres_processes(database_url)
        meter = CpuMeter({"database": database} if database else {})

        @contextlib.asynccontextmanager
        async def measured() -> AsyncIterator[None]:
            with meter:
                yield

        numbers = await drive(runs, workload, quick=quick, measured=measured)
    steps = numbers["n"] * numbers["steps_per_run"]
    numbers.update(machine_numbers(workload, meter, steps, load_before=load_before, calibration=calibration))
    return {**numbers, "server": runs.description}


def measure_peer(system: str, workload: str, server_url: str, *, quick: bool) -> dict[str, Any] | None:
    """One workload on a peer, on a fresh database of the cluster: its JSON line, or None if it failed."""
    log(f"{system}-{workload}: {WORKLOADS[workload].description}")
    database_url = create_database(server_url)
    try:
        numbers = asyncio.run(run_peer(system, database_url, workload, quick=quick))
    except Exception as err:  # report, and go on with the others
        log(f"{system}-{workload} failed: {err!r}")
        return None
    finally:
        drop_database(server_url, database_url)
    return {"workload": workload, "system": system, "backend": "postgres", **numbers, "quick": quick}


def table(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per workload: each system's median (and range over repetitions), and CMO's median / the peer's."""
    rows = []
    for workload, metric, better in METRICS:
        values = {
            system: [line[metric] for line in lines if line["workload"] == workload and line["system"] == system]
            for system in SYSTEMS
        }
        medians = {system: statistics.median(v) for system, v in values.items() if v}
        if not medians:
            continue
        row: dict[str, Any] = {"workload": workload, "metric": metric, "better": better}
        for system, median in medians.items():
            row[system] = {"median": median, "min": min(values[system]), "max": max(values[system])}
            row[system]["n"] = len(values[system])
        for cmo in SYSTEMS_OF_CMO:
            for peer in PEERS:
                if cmo in medians and medians.get(peer):
                    row[f"{cmo}/{peer}"] = round(medians[cmo] / medians[peer], 2)
        rows.append(row)
    return rows


def table_text(rows: list[dict[str, Any]]) -> str:
    ratios = [f"{cmo}/{peer}" for cmo in SYSTEMS_OF_CMO for peer in PEERS]
    header = ["workload", "metric", *SYSTEMS, *ratios]
    text = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row in rows:
        cells = [row["workload"], f"{row['metric']} ({row['better']} is better)"]
        for system in SYSTEMS:
            cell = row.get(system)
            if cell is None:
                cells.append("-")
            elif cell["n"] > 1:
                cells.append(f"{cell['median']:g} ({cell['min']:g}-{cell['max']:g})")
            else:
                cells.append(f"{cell['median']:g}")
        cells += [f"{row[ratio]:.2f}" if ratio in row else "-" for ratio in ratios]
        text.append("| " + " | ".join(cells) + " |")
    return "\n".join(text)


def floor_on(server_url: str) -> dict[str, float]:
    """The step floor (bench/floor.py), measured on a fresh database of the cluster."""
    database_url = create_database(server_url)
    try:
        return measure_floor(database_url)
    finally:
        drop_database(server_url, database_url)


def floor_text(floor: dict[str, float], rows: list[dict[str, Any]]) -> str:
    """The floor, and CMO's W3 step against it."""
    if not floor:
        return ""
    text = (
        f"floor (medians): gRPC unary round trip {floor['grpc_unary_round_trip_p50_ms']} ms, "
        f"message pair on a stream {floor['grpc_stream_message_pair_p50_ms']} ms, "
        f"Postgres commit {floor['postgres_commit_p50_ms']} ms; one step's floor {floor['step_floor_ms']} ms"
    )
    w3 = next((row for row in rows if row["workload"] == "W3" and "cmo" in row), None)
    if w3 is not None:
        text += f"; CMO's W3 step / floor: {w3['cmo']['median'] / floor['step_floor_ms']:.2f}"
    return text


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--system", choices=[*SYSTEMS, "all"], default="all")
    parser.add_argument("--workload", choices=[*PEER_WORKLOADS, "all"], default="all")
    parser.add_argument("--quick", action="store_true", help="fewer runs: a smoke test, not a measurement")
    parser.add_argument("--repeat", type=int, default=1, help="measure each pair this many times")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so every context below stops its processes and databases.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    systems = list(SYSTEMS) if args.system == "all" else [args.system]
    workloads = list(PEER_WORKLOADS) if args.workload == "all" else [args.workload]
    # What bench/run.py's `measure` reads: CMO exactly as `bench/run.py --backend postgres` runs it.
    cmo_args = argparse.Namespace(
        quick=args.quick, scale=1.0, profile=None, breakdown=False, patch=[], worker_calls="session"
    )

    env = environment()
    lines: list[dict[str, Any]] = []
    floors: list[dict[str, float]] = []
    failed = False
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cmo-bench-peers-")))
        server_url = os.environ.get("CMO_BENCH_POSTGRES_URL", "")
        if not server_url:
            log("starting a throwaway Postgres cluster")
            server_url = stack.enter_context(throwaway_postgres())
            # bench/run.py's database factory then makes CMO's databases on this same cluster.
            os.environ["CMO_BENCH_POSTGRES_URL"] = server_url
        fresh_database = stack.enter_context(postgres_databases(tmp))
        fresh_sqlite = stack.enter_context(sqlite_databases(tmp))
        # Systems alternate within each repetition, so that the machine's drift hits them alike.
        for attempt in range(args.repeat):
            floors.append(floor_on(server_url))
            print(json.dumps({"floor": floors[-1], "repetition": attempt + 1, **env}), flush=True)
            for workload in workloads:
                for system in systems:
                    if system in SYSTEMS_OF_CMO:
                        name = f"{system}-{workload}-{attempt + 1}"
                        backend, databases = (
                            ("postgres", fresh_database) if system == "cmo" else ("sqlite", fresh_sqlite)
                        )
                        line = measure(cmo_args, backend, WORKLOADS[workload], databases, tmp / name)
                        line = {"system": system, **line} if line else None
                    else:
                        line = measure_peer(system, workload, server_url, quick=args.quick)
                    if line is None:
                        failed = True
                        continue
                    lines.append(line)
                    print(json.dumps({**line, **env}), flush=True)
    rows = table(lines)
    floor = {key: statistics.median(f[key] for f in floors) for key in floors[0]} if floors else {}
    log(f"medians over {args.repeat} repetition(s); CMO/peer < 1 is CMO faster for a time, slower for runs/s:")
    print(table_text(rows), file=sys.stderr, flush=True)
    print(floor_text(floor, rows), file=sys.stderr, flush=True)
    print(json.dumps({"table": rows, "floor": floor, **env}), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
