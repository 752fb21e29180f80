"""The BlobStore contract, run on every blob backend: the filesystem and S3 (a real server).

A backend joins the suite with a harness in blob_backends.py (open a store; list what it really
holds; damage a blob; kill a writer mid-put) and an entry in the `blobs` fixture's params. The
tests speak only through the harness and the `BlobStore` protocol.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cmo_server.blob import BlobCorrupted, BlobNotFound, BlobRef, BlobStore
from tests.integration.contract.blob_backends import BlobsHarness, FilesystemBlobs, S3Blobs
from tests.support.s3 import S3Server, unique_bucket

MiB = 1024 * 1024
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@pytest.fixture(scope="session")
def contract_bucket(s3: S3Server) -> Iterator[str]:
    """A bucket for the S3 contract tests (made by the first store opened); emptied and removed after."""
    bucket = unique_bucket("cmo-contract")
    yield bucket
    with s3.client() as client:
        if client.bucket_exists(bucket):
            for obj in client.list_objects(bucket, recursive=True):
                if obj.object_name is not None:
                    client.remove_object(bucket, obj.object_name)
            client.remove_bucket(bucket)


@pytest.fixture(params=["filesystem", pytest.param("s3", marks=pytest.mark.s3)])
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> BlobsHarness:
    """The harness of each blob backend, on empty storage (for S3: a fresh key prefix)."""
    if request.param == "filesystem":
        return FilesystemBlobs(tmp_path / "blobs", tmp_path)
    bucket: str = request.getfixturevalue("contract_bucket")
    return S3Blobs(request.getfixturevalue("s3"), bucket, f"contract/{uuid.uuid4().hex[:12]}/", tmp_path)


@pytest.fixture
async def blob_store(blobs: BlobsHarness) -> AsyncIterator[BlobStore]:
    async with blobs.open() as store:
        yield store


async def test_put_then_get_returns_the_bytes_by_ref_and_by_digest(blob_store: BlobStore, blobs: BlobsHarness):
    data = b'{"state": "' + b"x" * 1000 + b'"}'
    ref = await blob_store.put(data)

    assert ref == BlobRef(hashlib.sha256(data).hexdigest(), len(data))
    assert await blob_store.get(ref) == data
    assert await blob_store.get(ref.sha256) == data
    assert await blob_store.exists(ref)
    assert await blob_store.exists(ref.sha256)
    assert blobs.stored_digests() == [ref.sha256]
    assert blobs.leftovers() == []


async def test_identical_content_is_stored_once(blob_store: BlobStore, blobs: BlobsHarness):
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


async def test_content_is_shared_between_store_instances(blobs: BlobsHarness):
    async with blobs.open() as writer, blobs.open() as reader:
        ref = await writer.put(b"shared")
        assert await reader.get(ref) == b"shared"
        assert await reader.put(b"shared") == ref
    assert blobs.stored_digests() == [ref.sha256]


@pytest.mark.parametrize("how", ["flip-byte", "truncate", "append"])
async def test_damaged_content_is_detected_on_read(blob_store: BlobStore, blobs: BlobsHarness, how: str):
    data = os.urandom(64 * 1024)
    ref = await blob_store.put(data)
    blobs.damage(ref.sha256, how)

    with pytest.raises(BlobCorrupted) as caught:
        await blob_store.get(ref)
    assert caught.value.digest == ref.sha256
    assert caught.value.actual != ref.sha256
    with pytest.raises(BlobCorrupted):
        await blob_store.get(ref.sha256)  # without the ref's size: the hash alone catches it


async def test_a_put_of_the_same_content_repairs_a_damaged_blob(blob_store: BlobStore, blobs: BlobsHarness):
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


async def test_delete_removes_a_blob_and_is_idempotent(blob_store: BlobStore, blobs: BlobsHarness):
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


async def test_the_empty_blob(blob_store: BlobStore, blobs: BlobsHarness):
    ref = await blob_store.put(b"")
    assert ref == BlobRef(EMPTY_SHA256, 0)
    assert await blob_store.exists(EMPTY_SHA256)
    assert await blob_store.get(ref) == b""
    assert await blob_store.put(b"") == ref
    assert blobs.stored_digests() == [EMPTY_SHA256]


async def test_a_large_blob_round_trips(blob_store: BlobStore, blobs: BlobsHarness):
    data = os.urandom(5 * MiB + 17)  # not a whole number of write chunks
    ref = await blob_store.put(data)
    assert ref.size == len(data)
    assert await blob_store.get(ref) == data
    assert blobs.stored_digests() == [ref.sha256]


async def test_concurrent_puts_of_same_and_different_content(blobs: BlobsHarness):
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
async def test_a_writer_killed_mid_put_leaves_no_visible_blob(blobs: BlobsHarness, stage: str):
    data = os.urandom(8 * MiB)
    digest = BlobRef.of(data).sha256
    await blobs.kill_during_put(data, stage)

    assert digest not in blobs.stored_digests()
    async with blobs.open() as store:
        assert not await store.exists(digest)
        with pytest.raises(BlobNotFound):
            await store.get(digest)
        ref = await store.put(data)  # the content can still be stored afterwards
        assert await store.get(ref) == data
    assert blobs.stored_digests() == [digest]


async def test_ping_answers_while_the_storage_is_usable(blob_store: BlobStore, blobs: BlobsHarness):
    await blob_store.ping()
    ref = await blob_store.put(b"after a ping")
    await blob_store.ping()
    assert blobs.stored_digests() == [ref.sha256]  # a ping writes nothing


async def test_aclose_is_idempotent_and_ends_use(blobs: BlobsHarness):
    async with blobs.open() as store:
        ref = await store.put(b"x")
    await store.aclose()
    await store.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await store.get(ref)
    with pytest.raises(RuntimeError, match="closed"):
        await store.put(b"y")
    with pytest.raises(RuntimeError, match="closed"):
        await store.ping()


async def test_stale_blobs_are_listed_and_deleted_only_while_still_stale(blob_store: BlobStore):
    old = await blob_store.put(b"old content " * 100)
    await asyncio.sleep(1.1)  # S3's Last-Modified has a resolution of one second
    cutoff = datetime.now(UTC)
    await asyncio.sleep(1.1)
    new = await blob_store.put(b"new content " * 100)

    stale = await blob_store.stale_blobs(cutoff)
    assert old.sha256 in stale
    assert new.sha256 not in stale
    assert not await blob_store.delete_if_stale(new.sha256, cutoff)
    assert await blob_store.exists(new)

    assert await blob_store.delete_if_stale(old.sha256, cutoff)
    assert not await blob_store.exists(old)
    assert not await blob_store.delete_if_stale(old.sha256, cutoff)  # gone already


async def test_a_put_of_stored_content_makes_it_fresh_again(blob_store: BlobStore):
    ref = await blob_store.put(b"shared by an old and a new payload " * 100)
    await asyncio.sleep(1.1)
    cutoff = datetime.now(UTC)
    assert ref.sha256 in await blob_store.stale_blobs(cutoff)  # listed by a collector…
    await asyncio.sleep(1.1)
    assert await blob_store.put(b"shared by an old and a new payload " * 100) == ref  # …then put again
    assert not await blob_store.delete_if_stale(ref.sha256, cutoff)
    assert await blob_store.get(ref) == b"shared by an old and a new payload " * 100
