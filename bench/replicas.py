"""Server replicas on one Postgres: W2 throughput with 1 and 2 replicas, and the load of an idle system.

    uv run python bench/replicas.py [--runs 500] [--idle-seconds 30]

Prints one JSON line per measurement (progress on stderr):

- `W2R` with `replicas` 1 and 2: W2 (runs of the 3-step graph started at once) with two worker
  processes and the client given every replica's address ("ipv4:A,B": calls spread over them).
- `IDLE`: one server and one worker whose 10 slots are long-polling (20 s polls), nothing to do:
  the statements the server sends Postgres per second over `--idle-seconds`, after a settling
  pause. Counted in the statement log of the throwaway cluster (`log_statement = all`), so this
  measurement needs it: it is skipped with $CMO_BENCH_POSTGRES_URL. (`pg_stat_database`'s
  transaction counts were no use: autovacuum's work on the new tables dwarfed ours.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cmo
from bench.processes import ServerSpec, running_server, running_worker
from bench.run import environment, log
from bench.workloads import w2_concurrent, wait_until_registered
from tests.support.postgres import Cluster, create_database, drop_database, throwaway_cluster

WORKERS = 2
WORKER_CONCURRENCY = 8
IDLE_SETTLE_SECONDS = 5.0
TRANSACTIONS = """
    SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()
"""


@contextlib.contextmanager
def postgres_server() -> Iterator[tuple[str, str, Cluster | None]]:
    """A Postgres server URL (maintenance database), what it is, and the cluster if it is ours."""
    if url := os.environ.get("CMO_BENCH_POSTGRES_URL", ""):
        yield url, "$CMO_BENCH_POSTGRES_URL", None
        return
    log("starting a throwaway Postgres cluster")
    with throwaway_cluster() as cluster:
        yield cluster.url, "throwaway cluster (fsync on)", cluster


@contextlib.asynccontextmanager
async def replicas(url: str, count: int, workdir: Path) -> AsyncIterator[str]:
    """`count` servers on the database at `url`; yields one gRPC target for all of them."""
    spec = ServerSpec(
        ["start", "--listen", "127.0.0.1:0"],
        env={"CMO_DATABASE_URL": url, "CMO_METRICS_LISTEN": "127.0.0.1:0", "CMO_AUTH": "none"},
    )
    async with contextlib.AsyncExitStack() as stack:
        addresses = [
            (await stack.enter_async_context(running_server(spec, workdir, name=f"server-{i}")))[0]
            for i in range(count)
        ]
        yield "ipv4:" + ",".join(addresses)


@contextlib.asynccontextmanager
async def workers(target: str, workdir: Path, count: int, concurrency: int) -> AsyncIterator[None]:
    async with contextlib.AsyncExitStack() as stack:
        for i in range(count):
            worker = running_worker(target, workdir, concurrency=concurrency, name=f"worker-{i}")
            await stack.enter_async_context(worker)
        yield


async def throughput(server_url: str, count: int, runs: int, workdir: Path) -> dict[str, Any]:
    url = create_database(server_url)
    try:
        async with (
            replicas(url, count, workdir) as target,
            workers(target, workdir, WORKERS, WORKER_CONCURRENCY),
            await cmo.Client.connect(target, wait_ready=30.0) as client,
        ):
            await wait_until_registered(client)
            result = await w2_concurrent(client, runs=runs, warmup=runs // 10)
    finally:
        drop_database(server_url, url)
    return {
        "workload": "W2R",
        "replicas": count,
        "workers": WORKERS,
        "worker_concurrency": WORKER_CONCURRENCY,
        **result,
    }


def sql(url: str, *statements: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def statements_between(log_file: Path, database: str, start: str, end: str) -> int:
    """Statements logged for `database` between the two marker statements."""
    counting, count = False, 0
    for line in log_file.read_text(errors="replace").splitlines():
        if start in line:
            counting = True
        elif end in line:
            break
        elif counting and f" {database} LOG:  " in line and ("statement: " in line or "execute " in line):
            count += 1
    return count


async def idle_load(cluster: Cluster, seconds: float, workdir: Path) -> dict[str, Any]:
    url = create_database(cluster.url)
    database = url.rpartition("/")[2]
    sql(
        cluster.url,
        "ALTER SYSTEM SET log_statement = 'all'",
        "ALTER SYSTEM SET log_line_prefix = '%m [%p] %d '",
        "SELECT pg_reload_conf()",
    )
    try:
        async with (
            replicas(url, 1, workdir) as target,
            workers(target, workdir, 1, 10),
            await cmo.Client.connect(target, wait_ready=30.0) as client,
        ):
            await wait_until_registered(client)
            await asyncio.sleep(IDLE_SETTLE_SECONDS)
            await asyncio.to_thread(sql, cluster.url, "SELECT 'cmo-idle-start'")
            started = time.monotonic()
            await asyncio.sleep(seconds)
            elapsed = time.monotonic() - started
            await asyncio.to_thread(sql, cluster.url, "SELECT 'cmo-idle-end'")
    finally:
        resets = ("ALTER SYSTEM RESET log_statement", "ALTER SYSTEM RESET log_line_prefix", "SELECT pg_reload_conf()")
        sql(cluster.url, *resets)
        drop_database(cluster.url, url)
    count = statements_between(cluster.log, database, "cmo-idle-start", "cmo-idle-end")
    return {
        "workload": "IDLE",
        "replicas": 1,
        "worker_slots_polling": 10,
        "poll_wait_s": 20,
        "seconds": round(elapsed, 1),
        "statements": count,
        "queries_per_s": round(count / elapsed, 3),
    }


async def main_async(args: argparse.Namespace) -> None:
    with postgres_server() as (server_url, where, cluster), tempfile.TemporaryDirectory(prefix="cmo-bench-") as tmp:
        common = {**environment(), "server": f"Postgres, {where}"}
        for count in (1, 2):
            log(f"W2R with {count} replica(s)")
            print(json.dumps({**await throughput(server_url, count, args.runs, Path(tmp)), **common}), flush=True)
        if cluster is None:
            log("idle load: skipped (it counts statements in the log of a throwaway cluster)")
            return
        log(f"idle load over {args.idle_seconds:g}s")
        print(json.dumps({**await idle_load(cluster, args.idle_seconds, Path(tmp)), **common}), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    asyncio.run(main_async(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
