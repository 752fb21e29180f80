"""Real `cmo-server` and worker processes for end-to-end tests: start, signal, kill -9, restart.

Everything started through a `Processes` is killed and reaped by `Processes.cleanup()` (the e2e
`processes` fixture calls it), whatever the test did: stopped processes are continued first, so
nothing is left behind even when a test fails half-way; and the kernel kills every child if the
test process itself dies without cleaning up (PR_SET_PDEATHSIG, so Linux only, as /proc is).
Each process writes its stdout and stderr to files under the `Processes` root; `logs()` returns
their tails for a failing test's report.

Nothing here sleeps to synchronise: every wait polls a condition (a line in a log file, a process
state in /proc) with a deadline.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from tests.support.waiting import assert_eventually

__all__ = ["REPO_ROOT", "Database", "Process", "Processes", "ServerProcess", "WorkerProcess"]

REPO_ROOT = Path(__file__).resolve().parents[2]
"""Working directory of worker processes, so `python -m tests.e2e.worker_main` imports."""

START_TIMEOUT = 30.0
_LISTENING = re.compile(r"cmo-server listening on (\S+)")
_READY = re.compile(r"^ready (\S+)$", re.MULTILINE)
# Runs first in every child: ask the kernel to SIGKILL it when the test process dies (even by
# kill -9, when no teardown runs), then exec the real command, which keeps the pid and the setting.
_LAUNCHER = """
import ctypes, os, signal, sys
ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
if os.getppid() != int(sys.argv[1]):
    os._exit(1)  # the test process died before prctl took effect
os.execv(sys.argv[2], sys.argv[2:])
"""
# Settings a developer's shell may hold that must not leak into a test's server.
_SCRUBBED = ("CMO_DATABASE_URL", "CMO_SQLITE_PATH", "CMO_LISTEN", "CMO_MAX_PAYLOAD_BYTES", "CMO_BLOB_BACKEND")


@dataclass(frozen=True, slots=True)
class Database:
    """Where a test server keeps its data: an SQLite file, or a Postgres database URL."""

    sqlite_path: Path | None = None
    database_url: str = ""


class Process:
    """One child process with its log files."""

    def __init__(self, name: str, popen: subprocess.Popen[bytes], stdout: Path, stderr: Path) -> None:
        self.name = name
        self.popen = popen
        self.stdout = stdout
        self.stderr = stderr

    @property
    def pid(self) -> int:
        """The process id."""
        return self.popen.pid

    @property
    def alive(self) -> bool:
        """Not yet exited (a stopped process is alive)."""
        return self.popen.poll() is None

    def output(self) -> str:
        """Everything it wrote to stdout so far."""
        return self.stdout.read_text(errors="replace") if self.stdout.exists() else ""

    def log(self) -> str:
        """Everything it wrote to stderr so far."""
        return self.stderr.read_text(errors="replace") if self.stderr.exists() else ""

    def state(self) -> str:
        """The kernel's one-letter state: R, S, T (stopped), Z … ("" once reaped)."""
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return ""
        # The command name (2nd field) is in parentheses and may hold spaces: split after it.
        return stat.rpartition(")")[2].split()[0]

    async def kill(self) -> int:
        """kill -9 and reap; returns the exit status."""
        if self.alive:
            self.popen.send_signal(signal.SIGKILL)
        return await self.wait_exit()

    async def pause(self) -> None:
        """SIGSTOP, and wait until the kernel reports it stopped."""
        self.popen.send_signal(signal.SIGSTOP)
        await assert_eventually(lambda: self.state() == "T", timeout=5, what=f"{self.name} stopped")

    async def resume(self) -> None:
        """SIGCONT, and wait until it is no longer stopped."""
        self.popen.send_signal(signal.SIGCONT)
        await assert_eventually(lambda: self.state() not in ("T", "t"), timeout=5, what=f"{self.name} resumed")

    async def wait_exit(self, *, timeout: float = 10.0) -> int:
        """Wait for the process to exit and reap it; returns the exit status."""
        await assert_eventually(lambda: not self.alive, timeout=timeout, what=f"{self.name} exited")
        return self.popen.wait()

    def raise_if_exited(self, doing: str) -> None:
        """Fail with the tail of its log if it is no longer running."""
        if not self.alive:
            raise AssertionError(f"{self.name} exited with {self.popen.returncode} while {doing}:\n{_tail(self.log())}")


class ServerProcess(Process):
    """A `cmo-server` process; `Processes.restart_server` brings it back on its port and database."""

    def __init__(self, name: str, popen: subprocess.Popen[bytes], stdout: Path, stderr: Path) -> None:
        super().__init__(name, popen, stdout, stderr)
        self.address = ""
        """host:port it serves on, once it announced it."""
        self.database = Database()
        """Where it keeps its data."""
        self.settings: dict[str, str] = {}
        """The CMO_* variables it was started with."""


class WorkerProcess(Process):
    """A worker process: `tests.e2e.worker_main`, or any program `Processes.start_program` started."""

    def __init__(self, name: str, popen: subprocess.Popen[bytes], stdout: Path, stderr: Path) -> None:
        super().__init__(name, popen, stdout, stderr)
        self.worker_id = ""
        """The id it leases tasks under, once it is ready."""


_P = TypeVar("_P", bound=Process)


class Processes:
    """Starts servers and workers and owns them: `cleanup()` kills and reaps every one."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._all: list[Process] = []
        self._names: dict[str, int] = {}
        # Belt and braces: a test run interrupted before the fixture's teardown leaves nothing.
        atexit.register(self.cleanup)

    # -- servers ----------------------------------------------------------------------------------

    async def start_server(
        self,
        database: Database,
        *,
        lease_seconds: float = 1.5,
        sweep_seconds: float = 0.2,
        env: Mapping[str, str] | None = None,
        listen: str = "127.0.0.1:0",
    ) -> ServerProcess:
        """Start a server (on a free port unless `listen` names one); returns once it announced its address."""
        settings = {
            "CMO_TASK_LEASE_SECONDS": str(lease_seconds),
            "CMO_SWEEP_INTERVAL_SECONDS": str(sweep_seconds),
            "CMO_SHUTDOWN_GRACE_SECONDS": "1",
            "CMO_METRICS_LISTEN": "127.0.0.1:0",  # several servers per test: no fixed port
            **(env or {}),
        }
        return await self._launch_server(database, listen, settings)

    async def restart_server(self, server: ServerProcess) -> ServerProcess:
        """Start a new server process on the same port and database (kill -9 the old one first)."""
        await server.kill()
        return await self._launch_server(server.database, server.address, server.settings)

    async def _launch_server(self, database: Database, listen: str, settings: dict[str, str]) -> ServerProcess:
        env = dict(settings)
        if database.database_url:
            env["CMO_DATABASE_URL"] = database.database_url
            env.setdefault("CMO_AUTH", "none")  # `start` wants a decision; tests of auth give theirs
            args = ["start", "--listen", listen]
        else:
            assert database.sqlite_path is not None
            args = ["start-dev", "--db", str(database.sqlite_path), "--listen", listen]
        server = self._spawn(ServerProcess, "server", [sys.executable, "-m", "cmo_server.cli", *args], env)
        server.database, server.settings = database, dict(settings)

        def announced() -> str:
            server.raise_if_exited("starting")
            found = _LISTENING.search(server.output())
            return found.group(1) if found else ""

        server.address = await assert_eventually(announced, timeout=START_TIMEOUT, what=f"{server.name} listening")
        return server

    # -- workers ----------------------------------------------------------------------------------

    async def start_worker(
        self,
        address: str,
        *,
        graph: str,
        marker_dir: Path,
        concurrency: int = 1,
        worker_id: str | None = None,
        calls: str = "session",
        redis: str = "",
    ) -> WorkerProcess:
        """Start a worker process for one test graph; returns once its graph is registered.

        `calls` is how it sends its task calls: "session" (one stream, the SDK's default) or "unary".
        """
        args = [
            sys.executable, "-m", "tests.e2e.worker_main",
            "--address", address,
            "--graph", graph,
            "--concurrency", str(concurrency),
            "--marker-dir", str(marker_dir),
            "--calls", calls,
            *(["--worker-id", worker_id] if worker_id else []),
            *(["--redis", redis] if redis else []),
        ]  # fmt: skip
        return await self.start_program(args)

    def launch(self, argv: list[str], *, role: str = "worker") -> WorkerProcess:
        """Start any program and return at once (a worker that waits for a server not up yet, say)."""
        return self._spawn(WorkerProcess, role, argv, {})

    async def start_program(self, argv: list[str], *, role: str = "worker") -> WorkerProcess:
        """Start any worker program that prints `ready <worker_id>` once it serves; returns then."""
        worker = self.launch(argv, role=role)

        def ready() -> str:
            worker.raise_if_exited("starting")
            found = _READY.search(worker.output())
            return found.group(1) if found else ""

        worker.worker_id = await assert_eventually(ready, timeout=START_TIMEOUT, what=f"{worker.name} ready")
        return worker

    async def start_workers(
        self,
        count: int,
        address: str,
        *,
        graph: str,
        marker_dir: Path,
        concurrency: int = 1,
        calls: str = "session",
    ) -> list[WorkerProcess]:
        """Start `count` workers at once (they boot in parallel); returns when all are ready."""
        starting = (
            self.start_worker(address, graph=graph, marker_dir=marker_dir, concurrency=concurrency, calls=calls)
            for _ in range(count)
        )
        return list(await asyncio.gather(*starting))

    # -- plumbing ---------------------------------------------------------------------------------

    def _spawn(self, kind: type[_P], role: str, argv: list[str], env: Mapping[str, str]) -> _P:
        self._names[role] = self._names.get(role, 0) + 1
        name = f"{role}-{self._names[role]}"
        stdout, stderr = self.root / f"{name}.out", self.root / f"{name}.err"
        child_env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
        child_env.update({"PYTHONUNBUFFERED": "1", "CMO_LOG_LEVEL": "INFO", **env})
        with stdout.open("wb") as out, stderr.open("wb") as err:
            popen = subprocess.Popen(
                [sys.executable, "-c", _LAUNCHER, str(os.getpid()), *argv],
                cwd=REPO_ROOT,
                env=child_env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                # Its own session: a Ctrl-C meant for pytest does not reach it; cleanup() does.
                start_new_session=True,
            )
        process = kind(name, popen, stdout, stderr)
        self._all.append(process)
        return process

    def cleanup(self) -> None:
        """Kill -9 and reap every process started here that is still running. Idempotent."""
        for process in self._all:
            if process.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.popen.send_signal(signal.SIGCONT)
                    process.popen.send_signal(signal.SIGKILL)
        for process in self._all:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.popen.wait(timeout=10)
        atexit.unregister(self.cleanup)

    def logs(self, *, lines: int = 40) -> str:
        """The last lines of every process's stderr and stdout, for a failure report."""
        parts = []
        for p in self._all:
            status = "running" if p.popen.returncode is None else f"exit {p.popen.returncode}"
            parts.append(f"--- {p.name} (pid {p.pid}, {status}) ---\n{_tail(p.output() + p.log(), lines)}")
        return "\n".join(parts)


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])
