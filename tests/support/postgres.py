"""Real Postgres for tests and benchmarks: $CMO_TEST_POSTGRES_URL, or a throwaway cluster.

A throwaway cluster is made with the machine's initdb/pg_ctl on a free port in a temporary
directory (as the `postgres` user when running as root, since initdb refuses root) and removed
afterwards. Each test then gets its own database, cloned from a migrated template.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg

__all__ = [
    "Cluster",
    "create_database",
    "drop_database",
    "postgres_bin",
    "postgres_url",
    "throwaway_cluster",
    "throwaway_postgres",
]


def postgres_bin(name: str) -> str:
    """Path of a Postgres server binary (initdb, pg_ctl …)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    if not candidates:
        raise RuntimeError(f"{name} not found: install the postgresql package or set CMO_TEST_POSTGRES_URL")
    return candidates[0]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres_user() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


@dataclass(frozen=True)
class Cluster:
    """A private Postgres cluster: its maintenance database's URL, and a way to restart it."""

    url: str
    data: Path
    log: Path
    options: str

    def restart(self, mode: str = "fast") -> None:
        """`pg_ctl restart -m MODE`: every session is cut, the server is back when this returns."""
        self._pg_ctl("-m", mode, "-l", str(self.log), "-o", self.options, "restart")

    def stop(self, mode: str = "fast") -> None:
        """`pg_ctl stop -m MODE`: the server is down when this returns."""
        self._pg_ctl("-m", mode, "stop")

    def start(self) -> None:
        """`pg_ctl start`: the server accepts connections when this returns."""
        self._pg_ctl("-l", str(self.log), "-o", self.options, "start")

    def _pg_ctl(self, *args: str) -> None:
        command = [*_as_postgres_user(), postgres_bin("pg_ctl"), "-D", str(self.data), "-w", *args]
        subprocess.run(command, check=True, capture_output=True)


@contextlib.contextmanager
def throwaway_cluster() -> Iterator[Cluster]:
    """Start a private Postgres cluster on a free port; removes it after."""
    root = Path(tempfile.mkdtemp(prefix="cmo-pg-"))
    data = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    port = free_port()
    run = _as_postgres_user()
    subprocess.run(
        [
            *run,
            postgres_bin("initdb"),
            "-D",
            str(data),
            "-U",
            "cmo",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
    )
    options = (
        f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={root} -c fsync=on -c max_connections=200"
    )
    pg_ctl = postgres_bin("pg_ctl")
    subprocess.run(
        [*run, pg_ctl, "-D", str(data), "-w", "-l", str(root / "log"), "-o", options, "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield Cluster(f"postgresql://cmo@127.0.0.1:{port}/postgres", data, root / "log", options)
    finally:
        subprocess.run([*run, pg_ctl, "-D", str(data), "-w", "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[str]:
    """Start a private Postgres cluster on a free port; yields its URL; removes it after."""
    with throwaway_cluster() as cluster:
        yield cluster.url


@contextlib.contextmanager
def postgres_url() -> Iterator[str]:
    """$CMO_TEST_POSTGRES_URL if set, else a throwaway cluster's URL (a maintenance database)."""
    if url := os.environ.get("CMO_TEST_POSTGRES_URL"):
        yield url
        return
    with throwaway_postgres() as url:
        yield url


def _with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


def create_database(server_url: str, *, template: str | None = None) -> str:
    """Create a uniquely named database (optionally from a template); returns its URL."""
    name = f"cmo_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        clause = f" TEMPLATE {template}" if template else ""
        conn.execute(f"CREATE DATABASE {name}{clause}")
    return _with_database(server_url, name)


def drop_database(server_url: str, database_url: str) -> None:
    """Drop a database made by `create_database`, closing its leftover connections."""
    name = database_url.rpartition("/")[2]
    for _ in range(50):
        try:
            with psycopg.connect(server_url, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            return
        except psycopg.OperationalError:
            time.sleep(0.1)
