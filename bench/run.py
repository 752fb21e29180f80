"""Run the CMO benchmarks against real processes; print one JSON line per workload and backend.

    uv run python bench/run.py [--backend sqlite|postgres|all] [--workload W1|W1A|W1H|W1P|W2|W3|WB|all] [--quick]

Each (backend, workload) pair gets a fresh database, its own `cmo-server` process and its own
worker process (`python -m bench.worker`); the client runs here. Postgres is
$CMO_BENCH_POSTGRES_URL (a server URL; a fresh database is created on it for each workload and
dropped after) or else a throwaway cluster made with tests/support/postgres.py. Progress goes to
stderr, results to stdout. W1P runs a second server and worker beside the first, on a database of
their own, with authentication and the step gates on (bench/policy_gates.py). See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import importlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/run.py` puts bench/, not the repo root, on the path
    sys.path.insert(0, str(ROOT))

import cmo  # noqa: E402
from bench.cpu import CpuMeter, calibrate, process_tree  # noqa: E402
from bench.graphs import HTTP_URL_VARIABLE  # noqa: E402
from bench.http_server import local_http_server  # noqa: E402
from bench.policy_gates import OFF_ENV, W1P_ON, Secured, decision_timings, secured  # noqa: E402
from bench.processes import ServerSpec, layer_timings, py_spy, running_server, running_worker, tail  # noqa: E402
from bench.server_main import PATCHES  # noqa: E402
from bench.workloads import WORKLOADS, Workload, wait_until_registered  # noqa: E402

BACKENDS = ("sqlite", "postgres")
NOISY_SHARE = 0.2
"""Flag a result when more than this share of the machine's CPU time went to other processes."""


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def postgres_missing() -> str | None:
    """Why the Postgres backend cannot run here, or None if it can."""
    try:
        module = importlib.import_module("cmo_server.store.postgres")
    except ImportError as err:
        return f"cmo_server.store.postgres is not importable ({err})"
    if not hasattr(module, "PostgresStore"):
        return "cmo_server.store.postgres has no PostgresStore yet"
    return None


@contextlib.contextmanager
def sqlite_databases(workdir: Path) -> Iterator[Callable[[str], contextlib.AbstractContextManager[ServerSpec]]]:
    """A factory of fresh SQLite files, one per workload."""

    @contextlib.contextmanager
    def fresh(name: str) -> Iterator[ServerSpec]:
        path = workdir / f"{name}.db"
        blobs = workdir / f"{name}-blobs"

        def storage() -> dict[str, int]:
            files = [workdir / f"{name}.db{suffix}" for suffix in ("", "-wal", "-shm")]
            return {**blob_usage(blobs), "database_bytes": sum(f.stat().st_size for f in files if f.exists())}

        yield ServerSpec(
            ["start-dev", "--db", str(path), "--listen", "127.0.0.1:0"],
            env={"CMO_BLOB_DIR": str(blobs)},
            description="SQLite file, WAL, synchronous=NORMAL",
            storage=storage,
        )

    yield fresh


@contextlib.contextmanager
def postgres_databases(
    workdir: Path, template: str | None = None
) -> Iterator[Callable[[str], contextlib.AbstractContextManager[ServerSpec]]]:
    """A factory of fresh Postgres databases on $CMO_BENCH_POSTGRES_URL or a throwaway cluster.

    Each is a copy of `template` when given (a database filled beforehand: bench/history.py).
    """
    from tests.support.postgres import create_database, drop_database, throwaway_postgres

    with contextlib.ExitStack() as stack:
        server_url = os.environ.get("CMO_BENCH_POSTGRES_URL", "")
        where = "$CMO_BENCH_POSTGRES_URL"
        if not server_url:
            log("starting a throwaway Postgres cluster")
            server_url = stack.enter_context(throwaway_postgres())
            where = "throwaway cluster (fsync on)"

        @contextlib.contextmanager
        def fresh(name: str) -> Iterator[ServerSpec]:
            url = create_database(server_url, template=template)
            blobs = workdir / f"{name}-blobs"
            try:
                yield ServerSpec(
                    ["start", "--listen", "127.0.0.1:0"],
                    env={
                        "CMO_DATABASE_URL": url,
                        "CMO_BLOB_DIR": str(blobs),
                        "CMO_METRICS_LISTEN": "127.0.0.1:0",
                        "CMO_AUTH": os.environ.get("CMO_AUTH", "none"),  # on only when the bench is given it
                    },
                    description=f"Postgres, {where}, pool {os.environ.get('CMO_POOL_SIZE', '8')}",
                    database_pids=postgres_processes(url),
                    storage=lambda: {**blob_usage(blobs), "database_bytes": postgres_table_bytes(url)},
                )
            finally:
                drop_database(server_url, url)

        yield fresh


def blob_usage(root: Path) -> dict[str, int]:
    """Files and bytes in a filesystem blob store (temporary files of unfinished puts excluded)."""
    files = [p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")] if root.exists() else []
    return {"blob_files": len(files), "blob_bytes": sum(p.stat().st_size for p in files)}


# Tables, their indexes and their TOAST tables: everything a run writes.
TABLE_BYTES = """
    SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind = 'r' AND n.nspname = 'public'
"""


def postgres_table_bytes(url: str) -> int:
    """The size of the database's tables (`pg_total_relation_size`: with indexes and TOAST)."""
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute(TABLE_BYTES).fetchone()
    return int(row[0]) if row else 0


def postgres_processes(url: str) -> Callable[[], list[int]] | None:
    """The postmaster and its backends, if the cluster runs on this machine and we can see it."""
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute("SHOW data_directory").fetchone()
    try:
        postmaster = int((Path(row[0]) / "postmaster.pid").read_text().split()[0]) if row else 0
    except (OSError, ValueError, IndexError):
        return None
    return (lambda: process_tree(postmaster)) if postmaster else None


async def run_one(
    workload: Workload,
    spec: ServerSpec,
    workdir: Path,
    *,
    sizes: dict[str, int],
    profile_dir: Path | None,
    breakdown: bool,
    patches: list[str],
    unary: bool = False,
    compared: Secured | None = None,
) -> dict[str, Any]:
    """Start the server and worker (and `compared`'s, for W1P), run the workload, stop them."""
    timings: dict[str, dict[str, Any]] = {}
    decisions: dict[str, Any] = {}
    async with contextlib.AsyncExitStack() as processes:
        pids: dict[str, int] = {}

        async def started(arm: ServerSpec, role: str = "", token: str | None = None) -> cmo.Client:
            """A server on `arm` and a worker serving it (`server{role}`, `worker{role}`); a client of them.

            `token`: what the worker and the client send (None: $CMO_TOKEN, if set).
            """
            address, pids[f"server{role}"] = await processes.enter_async_context(
                running_server(arm, workdir, name=f"server{role}", timed=breakdown, patches=patches)
            )
            pids[f"worker{role}"] = await processes.enter_async_context(
                running_worker(
                    address,
                    workdir,
                    name=f"worker{role}",
                    concurrency=workload.worker_concurrency,
                    timed=breakdown,
                    unary=unary,
                    env={"CMO_TOKEN": token} if token is not None else None,
                )
            )
            connected = await processes.enter_async_context(
                await cmo.Client.connect(address, wait_ready=30.0, token=token)
            )
            await wait_until_registered(connected)
            return connected

        extra: dict[str, Any] = {}
        # W1P's servers are off and on whatever the environment says; so are their callers' tokens.
        client = await started(spec, token="" if compared is not None else None)
        if compared is not None:
            extra["compared"] = await started(compared.spec, "_on", compared.token)
        load_before = round(os.getloadavg()[0], 2)
        calibration = calibrate()
        meter = CpuMeter({**pids, "database": spec.database_pids} if spec.database_pids else pids)

        @contextlib.asynccontextmanager
        async def measured() -> AsyncIterator[None]:
            async with contextlib.AsyncExitStack() as stack:
                if profile_dir is not None:
                    await stack.enter_async_context(py_spy(pids, profile_dir))
                if breakdown:
                    await stack.enter_async_context(layer_timings(pids, workdir, timings))
                if compared is not None:
                    stack.enter_context(decision_timings(compared.decision_log, decisions))
                with meter:
                    yield

        if workload.needs_storage:
            assert spec.storage is not None
            extra["storage"] = spec.storage
        numbers = await workload.run(client, measured=measured, **sizes, **extra)
    arms = 2 if compared is not None else 1
    steps = numbers["n"] * numbers["steps_per_run"] * arms
    numbers.update(machine_numbers(workload.name, meter, steps, load_before=load_before, calibration=calibration))
    if compared is not None:
        # Each arm's own server and worker per step of that arm; the shared processes per step of both.
        own = meter.per_step_ms(steps // arms)
        numbers["cpu_ms_per_step"].update({role: own[role] for role in pids})
        numbers["decisions"] = {**decisions, "per_run": round(decisions["count"] / numbers["n"], 2)}
    if breakdown:
        role_steps = steps // arms  # every timed process serves one arm
        numbers["breakdown"] = {
            role: {
                label: {
                    "calls_per_step": round(t["calls"] / role_steps, 3),
                    "mean_ms": round(1000 * t["total_s"] / t["calls"], 3) if t["calls"] else 0.0,
                    "ms_per_step": round(1000 * t["total_s"] / role_steps, 3),
                }
                for label, t in by_label.items()
            }
            for role, by_label in timings.items()
        }
    return numbers


def machine_numbers(
    name: str, meter: CpuMeter, steps: int, *, load_before: float, calibration: float
) -> dict[str, Any]:
    """The JSON line's keys on the machine's state: load, calibration, CPU per step, and a warning if noisy."""
    numbers: dict[str, Any] = {
        "loadavg_1m_before": load_before,
        "calibration_ms": calibration,
        "cpu_ms_per_step": meter.per_step_ms(steps),
        "cores_busy": round(meter.cores_busy, 2),
    }
    other, machine = meter.seconds["other"], meter.seconds["machine"]
    if machine > 0 and other > NOISY_SHARE * machine:
        # Someone else used the CPUs during the measurement: the numbers are not this code's.
        numbers["warning"] = f"{100 * other / machine:.0f}% of the CPU time went to other processes"
        log(f"{name}: {numbers['warning']}; run again on a quiet machine")
    return numbers


def environment() -> dict[str, Any]:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "commit": commit.stdout.strip() or None,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=[*BACKENDS, "all"], default="all")
    parser.add_argument("--workload", choices=[*WORKLOADS, "all"], default="all")
    parser.add_argument("--quick", action="store_true", help="fewer runs: a smoke test, not a measurement")
    parser.add_argument("--repeat", type=int, default=1, help="measure each pair this many times (fresh processes)")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply the measured runs (not the warm-up), e.g. for profiling"
    )
    parser.add_argument("--concurrency", type=int, help="worker slots, instead of the workload's default")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="sample the server and worker with py-spy during the measured part (raw stacks in DIR)",
    )
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="time the layers of the server and worker (wall clock per step; adds a little overhead)",
    )
    parser.add_argument(
        "--template",
        metavar="DATABASE",
        help="Postgres: start each workload's database as a copy of this one (see bench/history.py)",
    )
    parser.add_argument(
        "--worker-calls",
        choices=["session", "unary"],
        default="session",
        help="how the worker sends its task calls: on a worker session (the SDK's default) or as unary RPCs",
    )
    parser.add_argument(
        "--w1p-on",
        choices=W1P_ON,
        default="both",
        help="W1P: what the second server has on: authentication and the step gates, or one of them",
    )
    parser.add_argument(
        "--patch",
        action="append",
        default=[],
        choices=PATCHES,
        help="try a lever by patching the server process (see bench/server_main.py); repeatable",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so every context below stops its processes and databases.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    backends = list(BACKENDS) if args.backend == "all" else [args.backend]
    workloads = list(WORKLOADS.values()) if args.workload == "all" else [WORKLOADS[args.workload]]
    if args.concurrency:
        workloads = [dataclasses.replace(w, worker_concurrency=args.concurrency) for w in workloads]
    if "postgres" in backends and (why := postgres_missing()):
        if args.backend == "postgres":
            log(f"cannot run on Postgres: {why}")
            return 2
        log(f"skipping Postgres: {why}")
        backends.remove("postgres")

    env = environment()
    failed = False
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="cmo-bench-"))
        if any(w.needs_http for w in workloads):
            # Inherited by the worker processes started below, whose nodes call it.
            os.environ[HTTP_URL_VARIABLE] = stack.enter_context(local_http_server())
        for backend in backends:
            databases = (
                sqlite_databases(Path(tmp))
                if backend == "sqlite"
                else postgres_databases(Path(tmp), template=args.template)
            )
            with databases as fresh_database:
                for workload in workloads:
                    for attempt in range(args.repeat):
                        name = f"{backend}-{workload.name}" + (f"-{attempt + 1}" if args.repeat > 1 else "")
                        line = measure(args, backend, workload, fresh_database, Path(tmp) / name)
                        if line is None:
                            failed = True
                            continue
                        print(json.dumps({**line, **env}), flush=True)
    return 1 if failed else 0


def measure(
    args: argparse.Namespace,
    backend: str,
    workload: Workload,
    fresh_database: Callable[[str], contextlib.AbstractContextManager[ServerSpec]],
    workdir: Path,
) -> dict[str, Any] | None:
    """One workload on one backend in fresh processes on a fresh database: its JSON line."""
    workdir.mkdir()
    profile_dir = args.profile / workdir.name if args.profile else None
    sizes = workload.sizes(quick=args.quick, scale=args.scale)
    log(f"{workdir.name}: {workload.description} {sizes}")
    try:
        with contextlib.ExitStack() as databases:
            spec = databases.enter_context(fresh_database(workdir.name))
            compared = None
            if workload.compared:
                on = databases.enter_context(fresh_database(f"{workdir.name}-on"))
                compared = secured(on, workdir, auth=args.w1p_on != "policies", policies=args.w1p_on != "auth")
                spec = dataclasses.replace(spec, env={**spec.env, **OFF_ENV})
            numbers = asyncio.run(
                run_one(
                    workload,
                    spec,
                    workdir,
                    sizes=sizes,
                    profile_dir=profile_dir,
                    breakdown=args.breakdown,
                    patches=args.patch,
                    unary=args.worker_calls == "unary",
                    compared=compared,
                )
            )
    except Exception as err:  # report, and go on with the other workloads
        log(f"{workdir.name} failed: {err!r}")
        for path in sorted(workdir.glob("*.log")):
            log(f"last lines of {path.name}:\n{tail(path)}")
        return None
    line = {
        "workload": workload.name,
        "backend": backend,
        **numbers,
        "worker_concurrency": workload.worker_concurrency,
        "target": workload.target,
        "meets_target": workload.meets(numbers),
        "quick": args.quick,
        "worker_calls": args.worker_calls,
        **({"patches": args.patch} if args.patch else {}),
        "server": spec.description,
        **({"compared_with": compared.spec.description} if compared is not None else {}),
    }
    if profile_dir is not None:
        (profile_dir / "result.json").write_text(json.dumps(line, indent=1))
    return line


if __name__ == "__main__":
    sys.exit(main())
