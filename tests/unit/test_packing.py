"""pack/unpack: large payloads become a manifest over content-addressed blobs, and come back exactly."""

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cmo.serialization import canonical_json
from cmo_server.blob import BlobNotFound, BlobRef, FilesystemBlobStore, ManifestError, is_manifest, pack, unpack
from cmo_server.blob._packing import MANIFEST_MARKER, SEGMENT_BYTES


class MemoryBlobs:
    """A dict-backed BlobStore, so the property test can pack thousands of payloads quickly."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.written: dict[str, datetime] = {}

    async def put(self, data: bytes, /) -> BlobRef:
        ref = BlobRef.of(data)
        self.blobs[ref.sha256] = data
        self.written[ref.sha256] = datetime.now(UTC)
        return ref

    async def get(self, blob: BlobRef | str, /) -> bytes:
        digest = blob.sha256 if isinstance(blob, BlobRef) else blob
        if digest not in self.blobs:
            raise BlobNotFound(digest)
        return self.blobs[digest]

    async def exists(self, blob: BlobRef | str, /) -> bool:
        return (blob.sha256 if isinstance(blob, BlobRef) else blob) in self.blobs

    async def delete(self, blob: BlobRef | str, /) -> None:
        digest = blob.sha256 if isinstance(blob, BlobRef) else blob
        self.blobs.pop(digest, None)
        self.written.pop(digest, None)

    async def stale_blobs(self, older_than: datetime) -> list[str]:
        return [digest for digest, at in self.written.items() if at < older_than]

    async def delete_if_stale(self, digest: str, older_than: datetime) -> bool:
        if digest not in self.written or self.written[digest] >= older_than:
            return False
        await self.delete(digest)
        return True

    async def ping(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


def blob_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")]


MIB = 1024 * 1024


async def test_a_payload_at_or_below_the_threshold_is_stored_unchanged(tmp_path: Path):
    async with FilesystemBlobStore(tmp_path) as blobs:
        payload = canonical_json({"x": "y" * 100})
        assert await pack(payload, blobs, len(payload)) is payload
        assert await unpack(payload, blobs) is payload
        assert await pack(b"", blobs, 0) == b""
    assert blob_files(tmp_path) == []


async def test_a_large_field_is_stored_once_however_many_states_carry_it(tmp_path: Path):
    big = "x" * MIB
    async with FilesystemBlobStore(tmp_path) as blobs:
        stored = []
        for n in range(5):
            payload = canonical_json({"big": big, "n": n, "small": "s" * 100})
            packed = await pack(payload, blobs, 256 * 1024)
            assert is_manifest(packed)
            assert len(packed) < 300  # the manifest: the small fields inline, the big one by digest
            assert b"s" * 100 in packed
            stored.append((payload, packed))
        for payload, packed in stored:
            assert await unpack(packed, blobs) == payload
    files = blob_files(tmp_path)
    assert len(files) == 1
    assert files[0].stat().st_size == len(json.dumps(big))


async def test_a_payload_with_no_large_field_is_one_blob(tmp_path: Path):
    async with FilesystemBlobStore(tmp_path) as blobs:
        many_small = canonical_json({f"k{i}": "v" * 1000 for i in range(300)})  # ~300 KiB, no field > 64 KiB
        packed = await pack(many_small, blobs, 256 * 1024)
        assert is_manifest(packed)
        assert await unpack(packed, blobs) == many_small
        assert [f.stat().st_size for f in blob_files(tmp_path)] == [len(many_small)]


@pytest.mark.parametrize(
    "payload",
    [
        canonical_json(["a" * 70_000, "b"]),  # an array
        canonical_json("s" * 70_000),  # a string
        b'{"a":' + b"1" * 70_000 + b"}",  # a number
        b'{"k": "' + b"v" * 70_000 + b'" }  ',  # not canonical: white space everywhere
        b'{"broken": "' + b"v" * 70_000,  # not JSON at all
        b"\xff" * 70_000,  # not UTF-8
    ],
    ids=["array", "string", "number", "whitespace", "broken", "binary"],
)
async def test_anything_else_round_trips_exactly(tmp_path: Path, payload: bytes):
    async with FilesystemBlobStore(tmp_path) as blobs:
        packed = await pack(payload, blobs, 1000)
        assert is_manifest(packed)
        assert await unpack(packed, blobs) == payload


async def test_non_ascii_content_is_cut_between_characters(tmp_path: Path):
    async with FilesystemBlobStore(tmp_path) as blobs:
        payload = canonical_json({"ä": "ö" * 40_000, "z": "€" * 30_000, "ü": 1})
        packed = await pack(payload, blobs, 1000)
        assert await unpack(packed, blobs) == payload
        assert len(blob_files(tmp_path)) == 2  # both fields are over 64 KiB as UTF-8


async def test_a_missing_blob_or_a_damaged_manifest_is_an_error_not_data(tmp_path: Path):
    async with FilesystemBlobStore(tmp_path) as blobs:
        packed = await pack(canonical_json({"big": "x" * MIB}), blobs, 1000)
        for path in blob_files(tmp_path):
            path.unlink()
        with pytest.raises(BlobNotFound):
            await unpack(packed, blobs)
        with pytest.raises(ManifestError):
            await unpack(MANIFEST_MARKER + b'[["x"]]', blobs)
        with pytest.raises(ManifestError):
            await unpack(MANIFEST_MARKER + b"not json", blobs)
        with pytest.raises(ManifestError):
            await unpack(MANIFEST_MARKER + b'[["b","../etc",3]]', blobs)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=10,
)
large_values = st.builds(lambda c, n: c * n, st.sampled_from(["a", "é", "\\", '"', "€"]), st.integers(0, 300))


@settings(max_examples=200, deadline=None)
@given(
    fields=st.dictionaries(st.text(max_size=12), json_values | large_values, max_size=8),
    threshold=st.integers(0, 2000),
    segment=st.integers(1, 400),
)
def test_pack_then_unpack_gives_back_the_exact_bytes(fields, threshold, segment):
    payload = canonical_json(fields)
    blobs = MemoryBlobs()

    async def round_trip() -> tuple[bytes, bytes]:
        packed = await pack(payload, blobs, threshold, segment_bytes=segment)
        return packed, await unpack(packed, blobs)

    packed, unpacked = asyncio.run(round_trip())
    assert unpacked == payload
    assert is_manifest(packed) == (len(payload) > threshold)
    if len(payload) <= threshold:
        assert packed == payload
        assert not blobs.blobs


@given(st.dictionaries(st.text(max_size=8), json_values, max_size=6) | json_values)
def test_canonical_json_never_looks_like_a_manifest(value):
    assert not is_manifest(canonical_json(value))


def test_the_segment_size_is_below_the_default_threshold():
    # Otherwise a payload just over the threshold could never be split at its large field.
    assert SEGMENT_BYTES < 256 * 1024
