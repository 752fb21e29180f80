"""Harnesses of the blob backends for the BlobStore contract suite (test_blobs.py).

A harness opens stores on one backend's storage and looks behind their back: what is really
stored, damage to a stored blob, a writer killed in the middle of a put. The contract tests speak
only through a harness and the `BlobStore` protocol, so every backend runs the same tests.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Protocol

from minio.commonconfig import Tags

from cmo_server.blob import BlobStore, FilesystemBlobStore, S3BlobStore
from tests.support.processes import REPO_ROOT
from tests.support.s3 import S3Server

__all__ = ["BlobsHarness", "FilesystemBlobs", "S3Blobs"]


class BlobsHarness(Protocol):
    """What the contract tests need of a backend besides the `BlobStore` itself."""

    def open(self) -> AbstractAsyncContextManager[BlobStore]:
        """A store on this backend's storage (another instance each call, as another replica)."""
        ...

    def stored_digests(self) -> list[str]:
        """Digests of the blobs a reader can see, one entry per stored object (so duplicates show)."""
        ...

    def leftovers(self) -> list[str]:
        """Anything stored that is not a visible blob (pieces of unfinished puts)."""
        ...

    def identity(self, digest: str) -> object:
        """Changes whenever the stored object is rewritten."""
        ...

    def damage(self, digest: str, how: str) -> None:
        """Corrupt a stored blob behind the store's back: flip-byte, truncate or append."""
        ...

    async def kill_during_put(self, data: bytes, stage: str) -> None:
        """Start a put of `data` in another process and SIGKILL it at `stage` of the write.

        Stages: `mid-write` (part of the content written), `before-publish` (all of it written
        but not yet made visible under the blob's name).
        """
        ...


def _damaged(data: bytes, how: str) -> bytes:
    damaged = bytearray(data)
    if how == "flip-byte":
        damaged[len(damaged) // 2] ^= 0x01
    elif how == "truncate":
        del damaged[-1]
    elif how == "append":
        damaged += b"\0"
    else:
        raise AssertionError(how)
    return bytes(damaged)


async def _run_killed_writer(script: str, *args: str, stage: str) -> None:
    """Run `script` in a child process until it prints "hanging", then SIGKILL it."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        *args,
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), timeout=30)
        assert line == b"hanging\n", f"writer did not reach {stage}: {line!r}"
    finally:
        if child.returncode is None:
            child.kill()
        _, stderr = await child.communicate()
    assert child.returncode == -signal.SIGKILL, stderr.decode(errors="replace")


# -- filesystem ---------------------------------------------------------------------------------

# Runs `put` in a child process and hangs it at one stage of the write, so the parent can SIGKILL
# it there: "mid-write" after the first chunk of the temporary file, "before-publish" with the
# temporary file complete and fsynced but not yet renamed to the blob's name.
_KILLED_FILESYSTEM_WRITER = """
import asyncio, os, sys, threading
from pathlib import Path
from cmo_server.blob import FilesystemBlobStore

root, stage, payload = sys.argv[1:4]
data = Path(payload).read_bytes()

def hang(*args, **kwargs):
    print("hanging", flush=True)
    threading.Event().wait()

if stage == "mid-write":
    real_write, chunks = os.write, []
    def write(fd, buf):
        if len(buf) >= 65536:
            chunks.append(len(buf))
            if len(chunks) > 1:
                hang()
        return real_write(fd, buf)
    os.write = write
elif stage == "before-publish":
    os.replace = hang
else:
    sys.exit(f"unknown stage {stage}")

asyncio.run(FilesystemBlobStore(Path(root)).put(data))
print("finished", flush=True)
"""


class FilesystemBlobs:
    """Harness of `FilesystemBlobStore`: the test's view of the files under its root."""

    def __init__(self, root: Path, scratch: Path) -> None:
        self.root = root
        self._scratch = scratch

    @asynccontextmanager
    async def open(self) -> AsyncIterator[BlobStore]:
        async with FilesystemBlobStore(self.root) as store:
            yield store

    def _files(self) -> list[Path]:
        return [p for p in self.root.rglob("*") if p.is_file()] if self.root.exists() else []

    def stored_digests(self) -> list[str]:
        found = []
        for path in self._files():
            rel = path.relative_to(self.root).parts
            if len(rel) == 3 and not rel[2].startswith("."):
                assert (rel[0], rel[1]) == (rel[2][:2], rel[2][2:4]), f"blob outside its shard: {path}"
                found.append(rel[2])
        return sorted(found)

    def leftovers(self) -> list[str]:
        visible = {self.root / d[:2] / d[2:4] / d for d in self.stored_digests()}
        return sorted(str(p) for p in self._files() if p not in visible)

    def identity(self, digest: str) -> object:
        return (self.root / digest[:2] / digest[2:4] / digest).stat().st_ino

    def damage(self, digest: str, how: str) -> None:
        path = self.root / digest[:2] / digest[2:4] / digest
        path.write_bytes(_damaged(path.read_bytes(), how))

    async def kill_during_put(self, data: bytes, stage: str) -> None:
        payload = self._scratch / f"payload-{stage}"
        payload.write_bytes(data)
        await _run_killed_writer(_KILLED_FILESYSTEM_WRITER, str(self.root), stage, str(payload), stage=stage)
        # The temporary file of the interrupted put is there, and no reader looks at it.
        assert self.leftovers(), "the kill should have interrupted a write in progress"


# -- S3 -----------------------------------------------------------------------------------------

# Runs `put` in a child process and hangs it while it sends the object's bytes, so the parent can
# SIGKILL it there: "mid-write" after the first MiB, "before-publish" with all but the last byte
# sent (S3 makes an object visible only once its PUT is complete).
_KILLED_S3_WRITER = """
import asyncio, json, socket, sys, threading
from pathlib import Path
from cmo_server.blob import S3BlobStore
from cmo_server.config import S3Settings

settings, stage, payload = sys.argv[1:4]
data = Path(payload).read_bytes()
real_sendall = socket.socket.sendall

def sendall(sock, buf, *args):
    if len(buf) >= len(data):  # the request body, which the client sends in one piece
        cut = {"mid-write": 1024 * 1024, "before-publish": len(buf) - 1}[stage]
        real_sendall(sock, memoryview(buf)[:cut], *args)
        print("hanging", flush=True)
        threading.Event().wait()
    return real_sendall(sock, buf, *args)

socket.socket.sendall = sendall

async def main():
    async with S3BlobStore(S3Settings(**json.loads(settings))) as store:
        await store.put(data)

asyncio.run(main())
print("finished", flush=True)
"""


class S3Blobs:
    """Harness of `S3BlobStore`: the test's view of the objects under its key prefix in a bucket."""

    def __init__(self, server: S3Server, bucket: str, prefix: str, scratch: Path) -> None:
        self._server = server
        self.settings = server.settings(bucket, prefix=prefix)
        self.bucket = bucket
        self.prefix = prefix
        self._scratch = scratch

    @asynccontextmanager
    async def open(self) -> AsyncIterator[BlobStore]:
        async with S3BlobStore(self.settings) as store:
            yield store

    def key(self, digest: str) -> str:
        """Where the blob must be: `<prefix>sha256/ab/cd/<digest>`."""
        return f"{self.prefix}sha256/{digest[:2]}/{digest[2:4]}/{digest}"

    def _keys(self) -> list[str]:
        with self._server.client() as client:
            if not client.bucket_exists(self.bucket):
                return []
            objects = client.list_objects(self.bucket, prefix=self.prefix, recursive=True)
            return [o.object_name for o in objects if o.object_name is not None]

    def stored_digests(self) -> list[str]:
        found = []
        for key in self._keys():
            parts = key.removeprefix(self.prefix).split("/")
            if len(parts) == 4 and parts[0] == "sha256":
                assert (parts[1], parts[2]) == (parts[3][:2], parts[3][2:4]), f"blob outside its shard: {key}"
                found.append(parts[3])
        return sorted(found)

    def leftovers(self) -> list[str]:
        visible = {self.key(d) for d in self.stored_digests()}
        return sorted(key for key in self._keys() if key not in visible)

    def identity(self, digest: str) -> object:
        # A rewrite of an object drops its tags: tag it with a token the first time, read the
        # token back later. (Its ETag would not do, being equal for equal content.)
        with self._server.client() as client:
            tags = client.get_object_tags(self.bucket, self.key(digest))
            if tags and "identity" in tags:
                return tags["identity"]
            token = Tags.new_object_tags()
            token["identity"] = uuid.uuid4().hex
            client.set_object_tags(self.bucket, self.key(digest), token)
            return token["identity"]

    def damage(self, digest: str, how: str) -> None:
        # Bytes replaced under the same metadata: only a hash of the content can tell.
        key = self.key(digest)
        with self._server.client() as client:
            stat = client.stat_object(self.bucket, key)
            response = client.get_object(self.bucket, key)
            try:
                data = _damaged(response.read(), how)
            finally:
                response.close()
                response.release_conn()
            metadata: dict[str, str | list[str] | tuple[str]] = {
                "x-amz-meta-sha256": (stat.metadata or {})["x-amz-meta-sha256"]
            }
            client.put_object(self.bucket, key, io.BytesIO(data), len(data), metadata=metadata)

    async def kill_during_put(self, data: bytes, stage: str) -> None:
        payload = self._scratch / f"payload-{stage}"
        payload.write_bytes(data)
        settings = json.dumps(dataclasses.asdict(self.settings))
        await _run_killed_writer(_KILLED_S3_WRITER, settings, stage, str(payload), stage=stage)
        assert self.leftovers() == []  # S3 keeps nothing of an interrupted PUT
