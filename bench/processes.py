"""Real processes for the benchmarks: a `cmo-server` on a fresh database, a worker, py-spy.

Every process is started in its own session with stdout/stderr going to a log file in the
benchmark's temporary directory, and is always stopped (SIGTERM, then SIGKILL after a deadline)
when its context exits, whatever happened in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import sys
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ROOT", "ServerSpec", "layer_timings", "py_spy", "running_server", "running_worker", "tail"]

ROOT = Path(__file__).resolve().parent.parent
LISTENING = re.compile(rb"cmo-server listening on (\S+:\d+)")
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0


@dataclass(frozen=True, slots=True)
class ServerSpec:
    """How to start a server on one fresh database."""

    args: Sequence[str]
    """`cmo-server` arguments, e.g. ("start-dev", "--db", path, "--listen", "127.0.0.1:0")."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Extra environment, e.g. CMO_DATABASE_URL."""
    description: str = ""
    database_pids: Callable[[], list[int]] | None = None
    """The database server's processes, when they run on this machine (for CPU accounting)."""
    storage: Callable[[], dict[str, int]] | None = None
    """What the server has stored so far: blob_files, blob_bytes, database_bytes."""


def _cmo_server() -> list[str]:
    local = Path(sys.executable).with_name("cmo-server")
    script = str(local) if local.exists() else shutil.which("cmo-server")
    return [script] if script else [sys.executable, "-m", "cmo_server.cli"]


def tail(path: Path, lines: int = 30) -> str:
    """The last lines of a log file, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


async def _spawn(
    cmd: Sequence[str], *, log: Path, env: Mapping[str, str] | None = None, stdout_pipe: bool = False
) -> asyncio.subprocess.Process:
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            *cmd,
            stdout=asyncio.subprocess.PIPE if stdout_pipe else out,
            stderr=out,
            stdin=asyncio.subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=ROOT,
            start_new_session=True,  # a Ctrl-C in the terminal reaches only the bench, which stops them in order
        )


async def _stop(proc: asyncio.subprocess.Process, *, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> None:
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


@contextlib.asynccontextmanager
async def running_server(
    spec: ServerSpec, workdir: Path, *, name: str = "server", timed: bool = False, patches: Sequence[str] = ()
) -> AsyncIterator[tuple[str, int]]:
    """Start `cmo-server`; yields (address, pid) once it printed its address.

    With `timed` (layer timers) or `patches` it runs as `python -m bench.server_main` instead.
    """
    log = workdir / f"{name}.log"
    env = {
        "CMO_LOG_LEVEL": "WARNING",
        **spec.env,
        "BENCH_TIMERS": "1" if timed else "",
        "BENCH_PATCHES": ",".join(patches),
        "BENCH_TIMINGS_OUT": str(workdir / f"{name}-timings.json"),
    }
    command = [sys.executable, "-m", "bench.server_main"] if timed or patches else _cmo_server()
    proc = await _spawn([*command, *spec.args], log=log, env=env, stdout_pipe=True)
    drain: asyncio.Task[None] | None = None
    try:
        assert proc.stdout is not None
        try:
            address = await asyncio.wait_for(_read_address(proc.stdout), START_TIMEOUT)
        except TimeoutError:
            raise RuntimeError(f"cmo-server did not listen within {START_TIMEOUT:g}s:\n{tail(log)}") from None
        if address is None:
            await proc.wait()
            raise RuntimeError(f"cmo-server exited with {proc.returncode} before listening:\n{tail(log)}")
        drain = asyncio.create_task(_copy(proc.stdout, log))
        yield address, proc.pid
        if proc.returncode is not None:
            raise RuntimeError(f"cmo-server died during the benchmark ({proc.returncode}):\n{tail(log)}")
    finally:
        await _stop(proc)
        if drain is not None:
            drain.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drain


async def _read_address(stream: asyncio.StreamReader) -> str | None:
    while line := await stream.readline():
        if match := LISTENING.search(line):
            return match.group(1).decode()
    return None


async def _copy(stream: asyncio.StreamReader, log: Path) -> None:
    while chunk := await stream.read(65536):
        with log.open("ab") as out:
            out.write(chunk)


@contextlib.asynccontextmanager
async def running_worker(
    address: str,
    workdir: Path,
    *,
    concurrency: int,
    name: str = "worker",
    timed: bool = False,
    unary: bool = False,
    env: Mapping[str, str] | None = None,
) -> AsyncIterator[int]:
    """Start the bench worker process (`python -m bench.worker`); yields its pid.

    `env` is extra environment, e.g. CMO_TOKEN for a server with authentication on.
    """
    log = workdir / f"{name}.log"
    cmd = [sys.executable, "-m", "bench.worker", "--address", address, "--concurrency", str(concurrency)]
    if timed:
        cmd.append("--timings")
    if unary:
        cmd.append("--unary")
    env = {**(env or {}), "BENCH_TIMINGS_OUT": str(workdir / f"{name}-timings.json")}
    proc = await _spawn(cmd, log=log, env=env)
    try:
        yield proc.pid
        if proc.returncode is not None:
            raise RuntimeError(f"the worker died during the benchmark ({proc.returncode}):\n{tail(log)}")
    finally:
        await _stop(proc)


def py_spy_binary() -> str | None:
    """py-spy on PATH or next to this Python, if installed."""
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else shutil.which("py-spy")


@contextlib.asynccontextmanager
async def py_spy(pids: Mapping[str, int], outdir: Path, *, rate: int = 250) -> AsyncIterator[dict[str, Path]]:
    """Sample the given processes with `py-spy record` (raw collapsed stacks) while the context runs.

    `--gil` keeps only samples of the thread holding the GIL: the files hold Python CPU time, not
    waiting (py-spy's own idle detection counted threads parked in epoll as busy). Native work
    without the GIL (gRPC's C core, SQLite, libpq) is not in them; the /proc numbers count it.
    SIGINT makes py-spy write its file and exit.
    """
    binary = py_spy_binary()
    if binary is None:
        raise RuntimeError("py-spy is not installed: run under `uv run --with py-spy ...`")
    await asyncio.to_thread(outdir.mkdir, parents=True, exist_ok=True)
    procs: list[asyncio.subprocess.Process] = []
    files = {role: outdir / f"{role}.txt" for role in pids}
    try:
        for role, pid in pids.items():
            cmd = [binary, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw",
                   "--output", str(files[role]), "--gil"]  # fmt: skip
            procs.append(await _spawn(cmd, log=outdir / f"{role}.py-spy.log"))
        await asyncio.sleep(1.0)  # let py-spy attach before the measured part starts
        yield files
    finally:
        for proc in procs:
            await _stop(proc, sig=signal.SIGINT, timeout=30.0)


@contextlib.asynccontextmanager
async def layer_timings(pids: Mapping[str, int], workdir: Path, into: dict[str, dict[str, Any]]) -> AsyncIterator[None]:
    """Collect the timers of processes started with `timed=True` over the context's duration.

    On exit `into` holds role -> label -> {"calls", "total_s"}.
    """
    files = {role: workdir / f"{role}-timings.json" for role in pids}
    for role, pid in pids.items():
        files[role].unlink(missing_ok=True)
        os.kill(pid, signal.SIGUSR1)
    yield
    for pid in pids.values():
        os.kill(pid, signal.SIGUSR2)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10.0
    for role, path in files.items():
        while not path.exists():
            if loop.time() > deadline:
                raise RuntimeError(f"{role} wrote no timings to {path}")
            await asyncio.sleep(0.05)
        into[role] = json.loads(path.read_text())
