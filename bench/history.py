"""Does cost grow with history? W1 and W3 on a database holding a long history, beside an empty one.

    uv run python bench/history.py [--runs 1000000] [--steps-per-run 3] [--listing-only]

Fills a database with `--runs` ended runs (completed and failed, of five graphs, over 30 days),
their steps and one activity each, and 1,000 pending runs with a ready task each beside them,
then runs `bench/run.py --workload W1` and `W3` on copies of it and on empty databases, times
the first page of ListRuns (newest first, filtered by status and graph), a page from the middle of
the history and searches by id prefix on the filled one, and prints the query plans of a claim, a
checkpoint, that ListRuns and a search. One JSON
object per line on stdout; Postgres is $CMO_BENCH_POSTGRES_URL or a throwaway cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cmo_server.domain import DEFAULT_NAMESPACE, RunStatus  # noqa: E402
from cmo_server.store._pages import encode_run_page_token  # noqa: E402
from cmo_server.store.postgres import PostgresStore  # noqa: E402
from cmo_server.store.postgres._runs import LIST_RUNS, SEARCH_RUNS, with_limit  # noqa: E402
from cmo_server.store.postgres._tasks import ADVANCE_TASK, CLAIM_TASK  # noqa: E402
from tests.support.postgres import throwaway_postgres  # noqa: E402

HISTORY_DB = "cmo_bench_history"
GRAPHS = ("bench-three-step", "bench-chain", "history-a", "history-b", "history-c")

# One statement each: generate_series writes the rows server-side, far faster than inserts from here.
FILL_RUNS = """
    INSERT INTO runs (namespace, run_id, graph_id, graph_version, status, input, seed, step_count, result,
                      created_at, updated_at, completed_at)
    SELECT 'default/default', 'old-' || i, (%(graphs)s::text[])[1 + i %% 5], 1,
           CASE WHEN i %% 7 = 0 THEN 5 ELSE 4 END, '\\x7b7d'::bytea, i, %(steps)s, '\\x7b7d'::bytea,
           now() - interval '30 days' + i * interval '2 seconds', now() - interval '30 days' + i * interval '2 seconds',
           now() - interval '30 days' + i * interval '2 seconds' + interval '1 second'
      FROM generate_series(1, %(runs)s) AS i
"""
FILL_ACTIVITIES = """
    INSERT INTO activities (namespace, run_id, step_index, seq, kind, name, request_hash, result, attempt, recorded_at)
    SELECT 'default/default', 'old-' || i, 1, 0, 'call', 'lookup', md5(i::text), '\\x6e756c6c'::bytea, 1, now()
      FROM generate_series(1, %(runs)s) AS i
"""
# Live work beside the history: pending runs with a ready task each, of a graph no bench worker
# runs, so that the claim's plan is made on a tasks table that is not empty.
FILL_LIVE_RUNS = """
    INSERT INTO runs (namespace, run_id, graph_id, graph_version, status, input, seed, step_count, created_at,
                      updated_at)
    SELECT 'default/default', 'live-' || i, 'history-a', 1, 1, '\\x7b7d'::bytea, i, 0, now(), now()
      FROM generate_series(1, %(live)s) AS i
"""
FILL_LIVE_TASKS = """
    INSERT INTO tasks (namespace, run_id, step_index, node_id, task_queue, graph_key, attempt, visible_at, logical_time)
    SELECT 'default/default', 'live-' || i, 0, 'n0', 'default', 'default/default/history-a@1', 0,
           now() - interval '1 minute', now()
      FROM generate_series(1, %(live)s) AS i
"""
LIVE_RUNS = 1000
BIG_TABLES = ("runs", "steps", "activities", "tasks")
FILL_STEPS = """
    INSERT INTO steps (namespace, run_id, step_index, node_id, attempt, state, state_hash, output, next_key,
                       next_node, logical_time, started_at, finished_at)
    SELECT 'default/default', 'old-' || i, s, 'n' || s, 1, '\\x7b226e223a317d'::bytea,
           md5(i::text || s::text) || md5(s::text || i::text), ''::bytea, 'next', 'n' || (s + 1), now(), now(), now()
      FROM generate_series(1, %(runs)s) AS i, generate_series(0, %(steps)s - 1) AS s
"""


def log(message: str) -> None:
    print(f"[history] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    url = os.environ.get("CMO_BENCH_POSTGRES_URL", "")
    if url:
        yield url
        return
    log("starting a throwaway Postgres cluster")
    with throwaway_postgres() as url:
        yield url


def database_url(server_url: str, name: str) -> str:
    return f"{server_url.rpartition('/')[0]}/{name}"


def fill(server_url: str, runs: int, steps: int) -> str:
    """The history database, migrated and filled; returns its URL."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {HISTORY_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {HISTORY_DB}")
    url = database_url(server_url, HISTORY_DB)
    asyncio.run(migrate(url))
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(FILL_RUNS, {"graphs": list(GRAPHS), "runs": runs, "steps": steps})
        conn.execute(FILL_STEPS, {"runs": runs, "steps": steps})
        conn.execute(FILL_ACTIVITIES, {"runs": runs})
        conn.execute(FILL_LIVE_RUNS, {"live": LIVE_RUNS})
        conn.execute(FILL_LIVE_TASKS, {"live": LIVE_RUNS})
        conn.execute("VACUUM ANALYZE")
        (size,) = conn.execute("SELECT pg_database_size(current_database())").fetchone() or (0,)
    took = time.perf_counter() - started
    log(f"filled {runs} runs, {runs * steps} steps, {runs} activities, {LIVE_RUNS} live tasks in {took:.0f} s")
    log(f"the database takes {size >> 20} MiB")
    return url


async def migrate(url: str) -> None:
    async with PostgresStore.open(url, pool_size=1):
        pass


def workload(server_url: str, name: str, *, template: str | None) -> list[dict[str, Any]]:
    """bench/run.py's JSON lines for one workload on Postgres (on copies of `template` if given)."""
    command = [sys.executable, str(ROOT / "bench" / "run.py"), "--backend", "postgres", "--workload", name]
    if template:
        command += ["--template", template]
    env = {**os.environ, "CMO_BENCH_POSTGRES_URL": server_url}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        log(done.stderr[-2000:])
        raise SystemExit(f"bench/run.py {name} failed")
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


async def list_runs_first_page(url: str, *, graph_id: str, status: RunStatus, calls: int = 50) -> dict[str, Any]:
    async with PostgresStore.open(url, pool_size=1) as store:
        timings = []
        for _ in range(calls):
            started = time.perf_counter()
            runs, _ = await store.list_runs(DEFAULT_NAMESPACE, graph_id=graph_id, status=status, limit=100)
            timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    return {
        "query": "ListRuns first page",
        "filter": {"graph_id": graph_id, "status": status.name},
        "rows": len(runs),
        "p50_ms": round(statistics.median(timings), 3),
        "p95_ms": round(timings[int(len(timings) * 0.95) - 1], 3),
    }


async def list_runs_pages(url: str, runs: int, *, calls: int = 50) -> list[dict[str, Any]]:
    """A page deep in the newest-first listing (from the token of a run in the middle) and searches by
    id prefix, each timed `calls` times: what a UI paging through the history or searching it waits."""
    async with PostgresStore.open(url, pool_size=1) as store:
        middle = await store.get_run(DEFAULT_NAMESPACE, f"old-{runs // 2}")
        assert middle is not None, "the history holds old-1 to old-N"
        deep = encode_run_page_token(int(middle.created_at.timestamp() * 1_000_000), middle.run_id)
        asked: list[tuple[str, dict[str, Any]]] = [
            ("ListRuns page from the middle of the history", {"page_token": deep}),
            ("ListRuns by id prefix, 111 matches", {"id_prefix": f"old-{runs // 8000}"}),
            ("ListRuns by id prefix, a ninth of the runs", {"id_prefix": "old-9"}),
            ("ListRuns by id prefix, no match", {"id_prefix": "nobody-"}),
        ]
        lines = []
        for query, arguments in asked:
            timings = []
            for _ in range(calls):
                started = time.perf_counter()
                found, _ = await store.list_runs(DEFAULT_NAMESPACE, limit=100, **arguments)
                timings.append((time.perf_counter() - started) * 1000)
            timings.sort()
            lines.append(
                {
                    "query": query,
                    "arguments": {k: v for k, v in arguments.items() if k != "page_token"},
                    "rows": len(found),
                    "p50_ms": round(statistics.median(timings), 3),
                    "p95_ms": round(timings[int(len(timings) * 0.95) - 1], 3),
                }
            )
    return lines


def plans(url: str) -> list[dict[str, Any]]:
    """EXPLAIN ANALYZE of the statements that must use an index whatever the history's size."""
    statements = {
        "claim": (
            CLAIM_TASK,
            {
                "queues": ["default"],
                "graphs": ["default/default/history-a@1"],
                "worker_id": "w",
                "lease": timedelta(seconds=30),
                "running": 2,
                "pending": 1,
            },
        ),
        "checkpoint": (
            ADVANCE_TASK,
            {
                "namespace": "default/default",
                "run_id": "old-7",
                "step_index": 9,
                "attempt": 1,
                "worker_id": "w",
                "node_id": "n9",
                "graph_key": "default/default/history-c@1",
                "next_node": "n10",
                "next_queue": "default",
                "next_attempt": 1,
                "hold": timedelta(seconds=30),
                "owner": "w",
                "state": b"{}",
                "state_hash": "h",
                "output": b"",
                "next_key": "next",
                "started_at": datetime.now(UTC),
            },
        ),
        "list_runs": (
            with_limit(LIST_RUNS[True, True], 101),
            {
                "namespace": "default/default",
                "graph_id": "history-b",
                "status": 5,
                "before_at": datetime(9999, 12, 31, tzinfo=UTC),
                "before_id": "\U0010ffff",
                "limit": 101,
            },
        ),
        "list_runs_from_the_middle": (
            with_limit(LIST_RUNS[False, False], 101),
            {
                "namespace": "default/default",
                "graph_id": "",
                "status": 0,
                "before_at": datetime.now(UTC) - timedelta(days=18),
                "before_id": "old-500000",
                "limit": 101,
            },
        ),
        "search_runs": (
            with_limit(SEARCH_RUNS, 101),
            {
                "namespace": "default/default",
                "prefix": "old-9",
                "upper": "old-9\U0010ffff",
                "after": "",
                "graph_id": "",
                "status": 0,
                "limit": 101,
            },
        ),
    }
    found = []
    with psycopg.connect(url) as conn:
        for name, (statement, params) in statements.items():
            rows = conn.execute("EXPLAIN (ANALYZE, COSTS OFF) " + statement, params).fetchall()
            plan = [row[0] for row in rows]
            conn.rollback()  # EXPLAIN ANALYZE ran the writes: keep the history as it was
            scans = [line.strip() for line in plan if any(f"Seq Scan on {table}" in line for table in BIG_TABLES)]
            found.append({"plan": name, "seq_scans_of_big_tables": scans, "lines": plan})
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1_000_000, help="ended runs in the history")
    parser.add_argument("--steps-per-run", type=int, default=3, help="steps of each of them")
    parser.add_argument("--listing-only", action="store_true", help="the listings and plans, not W1 and W3")
    args = parser.parse_args(argv)
    with postgres_server() as server_url:
        url = fill(server_url, args.runs, args.steps_per_run)
        for graph_id, status in (
            ("history-b", RunStatus.FAILED),  # one run in 35
            ("bench-chain", RunStatus.COMPLETED),  # one run in 6
            ("history-c", RunStatus.CANCELLED),  # none: the worst case, every run is looked at
        ):
            page = asyncio.run(list_runs_first_page(url, graph_id=graph_id, status=status))
            print(json.dumps({"history_runs": args.runs, **page}), flush=True)
        for page in asyncio.run(list_runs_pages(url, args.runs)):
            print(json.dumps({"history_runs": args.runs, **page}), flush=True)
        for plan in plans(url):
            print(json.dumps({"history_runs": args.runs, **plan}), flush=True)
        for name in () if args.listing_only else ("W1", "W3"):
            for label, template in (("empty", None), ("history", HISTORY_DB)):
                for line in workload(server_url, name, template=template):
                    print(json.dumps({"history": label, "history_runs": args.runs if template else 0, **line}))
                    sys.stdout.flush()
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {HISTORY_DB} WITH (FORCE)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
