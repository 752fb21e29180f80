"""`cmo-server` for `run.py --breakdown` and `--patch`: `python -m bench.server_main start-dev ...`.

$BENCH_TIMERS=1 (`--breakdown`) adds wall-clock timers (bench/timers.py): each RPC handler, each
`Engine` method, each `Store` method as awaited by the engine (including the hop to the store
thread or the pool checkout), on SQLite the transaction functions on the store's thread, and on
Postgres each statement (`AsyncConnection.execute`).

$BENCH_PATCHES (`--patch`, comma-separated) tries a lever without editing the server, to measure
what it would be worth before anyone implements it properly:

- `sqlite-inline`: the SQLite store runs its transactions on the event loop's thread instead of
  hopping to its own thread and back for each (the loop blocks for the transaction).
- `uvloop`: the server runs on uvloop instead of asyncio's default loop (needs
  `uv run --with uvloop`).
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from bench.timers import install_signal_handlers, time_async, time_methods, time_sync


def instrument() -> None:
    from cmo_server.api import RunServicer, WorkerServicer
    from cmo_server.engine import Engine

    time_methods(RunServicer, "rpc")
    time_methods(WorkerServicer, "rpc")
    time_methods(Engine, "engine")
    instrument_policy()
    from cmo_server.store.sqlite import SqliteStore
    from cmo_server.store.sqlite import _runs as sqlite_runs
    from cmo_server.store.sqlite import _tasks as sqlite_tasks

    time_methods(SqliteStore, "store")
    for module, name in (
        (sqlite_tasks, "claim_task"),
        (sqlite_tasks, "complete_step"),
        (sqlite_runs, "create_run"),
        (sqlite_runs, "get_run"),
    ):
        if callable(fn := getattr(module, name, None)):  # private: skip what was renamed
            setattr(module, name, time_sync(f"sqlite-thread.{name}", fn))
    try:
        from cmo_server.store.postgres import PostgresStore
    except ImportError:
        return
    time_methods(PostgresStore, "store")
    from psycopg import AsyncConnection

    # One statement = one round trip and, in autocommit mode, one commit. An empty statement is
    # psycopg-pool's `check_connection` (a round trip per checkout), if a pool is given that check.
    execute = AsyncConnection.execute
    timed_statement = time_async("psycopg.execute(statement)", execute)
    timed_check = time_async("psycopg.execute(pool check)", execute)

    async def timed_execute(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        timed = timed_check if query == "" else timed_statement
        return await timed(self, query, *args, **kwargs)

    AsyncConnection.execute = timed_execute  # type: ignore[method-assign]


def instrument_policy() -> None:
    """The gates (input, decision, log) and the callers' credentials, when they are on."""
    from cmo.policy import PolicyBundle
    from cmo_server.auth import Authenticator
    from cmo_server.policy import DecisionLog, PolicyGates

    for cls, names in (
        (PolicyGates, ("before_step", "after_step", "_step_input")),
        (PolicyBundle, ("decide", "_query")),
        (DecisionLog, ("record",)),
        (Authenticator, ("caller",)),
    ):
        for name in names:
            setattr(cls, name, time_sync(f"policy.{cls.__name__}.{name}", getattr(cls, name)))


PATCHES = ("sqlite-inline", "uvloop")


def patch(names: list[str]) -> None:
    unknown = set(names) - set(PATCHES)
    if unknown:
        raise SystemExit(f"unknown BENCH_PATCHES {sorted(unknown)}; known: {PATCHES}")
    if "sqlite-inline" in names:
        from cmo_server.store.sqlite import SqliteStore

        async def inline(self: Any, fn: Any, *args: Any) -> Any:
            return fn(self._conn, *args)

        SqliteStore._call = inline  # type: ignore[method-assign]
    if "uvloop" in names:
        # Not a dependency of the project: run the bench under `uv run --with uvloop`.
        importlib.import_module("uvloop").install()


def main() -> None:
    if os.environ.get("BENCH_TIMERS"):
        instrument()
        install_signal_handlers()
    patch([p for p in os.environ.get("BENCH_PATCHES", "").split(",") if p])
    from cmo_server.cli import main as cli_main

    sys.exit(cli_main())


if __name__ == "__main__":
    main()
