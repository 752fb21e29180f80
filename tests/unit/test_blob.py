import inspect
from pathlib import Path

import pytest

import cmo_server.blob
from cmo_server.blob import BlobRef, FilesystemBlobStore, offload, resolve, should_offload
from cmo_server.config import ConfigError, ServerConfig


def test_blob_package_exports_are_pinned_sorted_and_documented():
    assert cmo_server.blob.__all__ == [
        "BlobCorrupted",
        "BlobError",
        "BlobNotFound",
        "BlobRef",
        "BlobStore",
        "BlobStoreUnavailable",
        "FilesystemBlobStore",
        "ManifestError",
        "S3BlobStore",
        "is_manifest",
        "manifest_digests",
        "offload",
        "open_blob_store",
        "pack",
        "resolve",
        "should_offload",
        "unpack",
    ]
    assert cmo_server.blob.__all__ == sorted(cmo_server.blob.__all__)
    for name in cmo_server.blob.__all__:
        assert inspect.getdoc(getattr(cmo_server.blob, name)), name


def test_blob_ref_names_content_by_sha256():
    ref = BlobRef.of(b"abc")
    assert ref == BlobRef("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", 3)
    assert BlobRef.of(b"abc") == ref
    assert BlobRef.of(b"abd") != ref
    with pytest.raises(ValueError, match="SHA-256"):
        BlobRef("ABC", 3)
    with pytest.raises(ValueError, match="size"):
        BlobRef(ref.sha256, -1)


def test_should_offload_only_above_the_threshold():
    assert not should_offload(100, threshold=100)
    assert should_offload(101, threshold=100)
    assert not should_offload(0, threshold=0)
    assert should_offload(1, threshold=0)
    with pytest.raises(ValueError, match="threshold"):
        should_offload(1, threshold=-1)


async def test_offload_keeps_small_payloads_inline_and_resolve_reverses_it(tmp_path: Path):
    async with FilesystemBlobStore(tmp_path) as store:
        small, large = b"s" * 16, b"L" * 17
        assert await offload(small, store, threshold=16) == small
        ref = await offload(large, store, threshold=16)
        assert ref == BlobRef.of(large)
        assert await store.exists(ref)
        assert not await store.exists(BlobRef.of(small))
        assert await resolve(small, store) == small
        assert await resolve(ref, store) == large


def test_config_reads_and_validates_the_blob_settings():
    default = ServerConfig.from_env({})
    assert (default.blob_root, default.blob.inline_threshold_bytes) == (".cmo/blobs", 262144)
    assert default.blob.max_artifact_bytes == 64 * 1024 * 1024
    assert ServerConfig.from_env({"CMO_SQLITE_PATH": "data/dev.db"}).blob_root == "data/blobs"
    assert ServerConfig.from_env({"CMO_DATABASE_URL": "postgresql://db/cmo"}).blob_root == ".cmo/blobs"
    config = ServerConfig.from_env({"CMO_BLOB_DIR": "/var/lib/cmo/blobs", "CMO_INLINE_THRESHOLD_BYTES": "0"})
    assert (config.blob_root, config.blob.inline_threshold_bytes) == ("/var/lib/cmo/blobs", 0)
    assert config.redacted()["blob"]["dir"] == "/var/lib/cmo/blobs"
    with pytest.raises(ConfigError, match="CMO_INLINE_THRESHOLD_BYTES"):
        ServerConfig.from_env({"CMO_INLINE_THRESHOLD_BYTES": "256KiB"})
    with pytest.raises(ConfigError, match="CMO_INLINE_THRESHOLD_BYTES"):
        ServerConfig.from_env({"CMO_INLINE_THRESHOLD_BYTES": "-1"})
    with pytest.raises(ConfigError, match="CMO_BLOB_DIR"):
        ServerConfig.from_env({"CMO_BLOB_DIR": " "})
    with pytest.raises(ConfigError, match="CMO_MAX_ARTIFACT_BYTES"):
        ServerConfig.from_env({"CMO_MAX_ARTIFACT_BYTES": "0"})
