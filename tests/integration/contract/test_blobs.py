"""The BlobStore contract, run on every blob backend (the filesystem today).

A backend joins the suite with a harness (open a store; list what it really holds; damage a blob;
kill a writer mid-put) and an entry in the `blobs` fixture's params, e.g.
`pytest.param("s3", marks=pytest.mark.s3)`. The tests speak only through the harness and the
`BlobStore` protocol.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from cmo_server.blob import BlobCorrupted, BlobNotFound, BlobRef, BlobStore, FilesystemBlobStore
from tests.support.processes import REPO_ROOT

MiB = 1024 * 1024
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

# Runs `put` in a child process and hangs it at one stage of the write, so the parent can SIGKILL
# it there: "mid-write" after the first chunk of the temporary file, "before-publish" with the
# temporary file complete and fsynced but not yet renamed to the blob's name.
_KILLED_WRITER = """
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
        """A store on this backend's storage (another instance each call, as another replica)."""
        async with FilesystemBlobStore(self.root) as store:
            yield store

    def _files(self) -> list[Path]:
        return [p for p in self.root.rglob("*") if p.is_file()] if self.root.exists() else []

    def stored_digests(self) -> list[str]:
        """Digests of the blobs a reader can see, one entry per stored object (so duplicates show)."""
        found = []
        for path in self._files():
            rel = path.relative_to(self.root).parts
            if len(rel) == 3 and not rel[2].startswith("."):
                assert (rel[0], rel[1]) == (rel[2][:2], rel[2][2:4]), f"blob outside its shard: {path}"
                found.append(rel[2])
        return sorted(found)

    def leftovers(self) -> list[str]:
        """Anything stored that is not a visible blob (temporary files of unfinished puts)."""
        visible = {self.root / d[:2] / d[2:4] / d for d in self.stored_digests()}
        return sorted(str(p) for p in self._files() if p not in visible)

    def identity(self, digest: str) -> object:
        """Changes whenever the stored object is rewritten (here: the file's inode)."""
        return (self.root / digest[:2] / digest[2:4] / digest).stat().st_ino

    def damage(self, digest: str, how: str) -> None:
        """Corrupt a stored blob behind the store's back."""
        path = self.root / digest[:2] / digest[2:4] / digest
        data = bytearray(path.read_bytes())
        if how == "flip-byte":
            data[len(data) // 2] ^= 0x01
        elif how == "truncate":
            del data[-1]
        elif how == "append":
            data += b"\0"
        else:
            raise AssertionError(how)
        path.write_bytes(bytes(data))

    async def kill_during_put(self, data: bytes, stage: str) -> None:
        """Start a put of `data` in another process and SIGKILL it at `stage` of the write."""
        payload = self._scratch / f"payload-{stage}"
        payload.write_bytes(data)
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _KILLED_WRITER,
            str(self.root),
            stage,
            str(payload),
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


@pytest.fixture(params=["filesystem"])
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> FilesystemBlobs:
    """The harness of each blob backend, on empty storage."""
    assert request.param == "filesystem"
    return FilesystemBlobs(tmp_path / "blobs", tmp_path)


@pytest.fixture
async def blob_store(blobs: FilesystemBlobs) -> AsyncIterator[BlobStore]:
    async with blobs.open() as store:
        yield store


async def test_put_then_get_returns_the_bytes_by_ref_and_by_digest(blob_store: BlobStore, blobs: FilesystemBlobs):
    data = b'{"state": "' + b"x" * 1000 + b'"}'
    ref = await blob_store.put(data)

    assert ref == BlobRef(hashlib.sha256(data).hexdigest(), len(data))
    assert await blob_store.get(ref) == data
    assert await blob_store.get(ref.sha256) == data
    assert await blob_store.exists(ref)
    assert await blob_store.exists(ref.sha256)
    assert blobs.stored_digests() == [ref.sha256]
    assert blobs.leftovers() == []


async def test_identical_content_is_stored_once(blob_store: BlobStore, blobs: FilesystemBlobs):
    data = os.urandom(300 * 1024)
    first = await blob_store.put(data)
    before = blobs.identity(first.sha256)
    second = await blob_store.put(bytes(data))  # equal content, another object
    other = await blob_store.put(data + b"!")

    assert second == first
    assert other != first
    assert blobs.identity(first.sha256) == before  # the second put wrote nothing
    assert blobs.stored_digests() == sorted([first.sha256, other.sha256])
    assert blobs.leftovers() == []


async def test_content_is_shared_between_store_instances(blobs: FilesystemBlobs):
    async with blobs.open() as writer, blobs.open() as reader:
        ref = await writer.put(b"shared")
        assert await reader.get(ref) == b"shared"
        assert await reader.put(b"shared") == ref
    assert blobs.stored_digests() == [ref.sha256]


@pytest.mark.parametrize("how", ["flip-byte", "truncate", "append"])
async def test_damaged_content_is_detected_on_read(blob_store: BlobStore, blobs: FilesystemBlobs, how: str):
    data = os.urandom(64 * 1024)
    ref = await blob_store.put(data)
    blobs.damage(ref.sha256, how)

    with pytest.raises(BlobCorrupted) as caught:
        await blob_store.get(ref)
    assert caught.value.digest == ref.sha256
    assert caught.value.actual != ref.sha256
    with pytest.raises(BlobCorrupted):
        await blob_store.get(ref.sha256)  # without the ref's size: the hash alone catches it


async def test_a_put_of_the_same_content_repairs_a_damaged_blob(blob_store: BlobStore, blobs: FilesystemBlobs):
    data = os.urandom(64 * 1024)
    ref = await blob_store.put(data)
    blobs.damage(ref.sha256, "flip-byte")

    assert await blob_store.put(data) == ref
    assert await blob_store.get(ref) == data
    assert blobs.stored_digests() == [ref.sha256]
    assert blobs.leftovers() == []


async def test_a_missing_blob_raises_not_found(blob_store: BlobStore):
    ref = BlobRef.of(b"never stored")
    assert not await blob_store.exists(ref)
    with pytest.raises(BlobNotFound) as caught:
        await blob_store.get(ref)
    assert caught.value.digest == ref.sha256
    with pytest.raises(BlobNotFound):
        await blob_store.get(ref.sha256)


@pytest.mark.parametrize("bad", ["", "abc", "../" * 20 + "etc/passwd", "A" * 64, "g" * 64, EMPTY_SHA256 + "0"])
async def test_a_malformed_digest_is_refused(blob_store: BlobStore, bad: str):
    with pytest.raises(ValueError, match="SHA-256"):
        await blob_store.get(bad)
    with pytest.raises(ValueError, match="SHA-256"):
        await blob_store.exists(bad)
    with pytest.raises(ValueError, match="SHA-256"):
        await blob_store.delete(bad)


async def test_delete_removes_a_blob_and_is_idempotent(blob_store: BlobStore, blobs: FilesystemBlobs):
    kept = await blob_store.put(b"kept")
    gone = await blob_store.put(b"gone")
    await blob_store.delete(gone)
    await blob_store.delete(gone.sha256)  # already gone: nothing happens

    assert not await blob_store.exists(gone)
    with pytest.raises(BlobNotFound):
        await blob_store.get(gone)
    assert await blob_store.get(kept) == b"kept"
    assert blobs.stored_digests() == [kept.sha256]
    assert await blob_store.put(b"gone") == gone  # and it can be stored again
    assert await blob_store.get(gone) == b"gone"


async def test_the_empty_blob(blob_store: BlobStore, blobs: FilesystemBlobs):
    ref = await blob_store.put(b"")
    assert ref == BlobRef(EMPTY_SHA256, 0)
    assert await blob_store.exists(EMPTY_SHA256)
    assert await blob_store.get(ref) == b""
    assert await blob_store.put(b"") == ref
    assert blobs.stored_digests() == [EMPTY_SHA256]


async def test_a_large_blob_round_trips(blob_store: BlobStore, blobs: FilesystemBlobs):
    data = os.urandom(5 * MiB + 17)  # not a whole number of write chunks
    ref = await blob_store.put(data)
    assert ref.size == len(data)
    assert await blob_store.get(ref) == data
    assert blobs.stored_digests() == [ref.sha256]


async def test_concurrent_puts_of_same_and_different_content(blobs: FilesystemBlobs):
    same = os.urandom(512 * 1024)
    distinct = [os.urandom(16 * 1024) + bytes([i]) for i in range(10)]
    start = threading.Barrier(8)

    def replica(i: int) -> list[BlobRef]:
        # Another thread with its own store and event loop, as another server replica would be.
        async def puts() -> list[BlobRef]:
            async with blobs.open() as store:
                start.wait(timeout=30)
                return list(await asyncio.gather(*(store.put(same) for _ in range(5)), store.put(distinct[i])))

        return asyncio.run(puts())

    async with blobs.open() as store:
        with ThreadPoolExecutor(max_workers=8) as pool:
            threads = [asyncio.wrap_future(pool.submit(replica, i)) for i in range(8)]
            tasks = [store.put(same) for _ in range(50)] + [store.put(d) for d in distinct]
            local, *remote = await asyncio.gather(asyncio.gather(*tasks), *threads)

        refs = [*local, *(ref for refs in remote for ref in refs)]
        assert len(refs) == 60 + 8 * 6
        assert {ref for ref in refs if ref.size == len(same)} == {BlobRef.of(same)}
        assert {ref for ref in refs if ref.size != len(same)} == {BlobRef.of(d) for d in distinct}
        assert await store.get(BlobRef.of(same)) == same
        for d in distinct:
            assert await store.get(BlobRef.of(d)) == d
    expected = sorted({BlobRef.of(same).sha256, *(BlobRef.of(d).sha256 for d in distinct)})
    assert blobs.stored_digests() == expected
    assert blobs.leftovers() == []


@pytest.mark.parametrize("stage", ["mid-write", "before-publish"])
async def test_a_writer_killed_mid_put_leaves_no_visible_blob(blobs: FilesystemBlobs, stage: str):
    data = os.urandom(8 * MiB)
    digest = BlobRef.of(data).sha256
    await blobs.kill_during_put(data, stage)

    assert blobs.leftovers(), "the kill should have interrupted a write in progress"
    assert digest not in blobs.stored_digests()
    async with blobs.open() as store:
        assert not await store.exists(digest)
        with pytest.raises(BlobNotFound):
            await store.get(digest)
        ref = await store.put(data)  # the content can still be stored afterwards
        assert await store.get(ref) == data
    assert blobs.stored_digests() == [digest]


async def test_aclose_is_idempotent_and_ends_use(blobs: FilesystemBlobs):
    async with blobs.open() as store:
        ref = await store.put(b"x")
    await store.aclose()
    await store.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await store.get(ref)
    with pytest.raises(RuntimeError, match="closed"):
        await store.put(b"y")
