"""The configured blob store: the one place that chooses a backend from `ServerConfig`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from cmo_server.blob._filesystem import FilesystemBlobStore
from cmo_server.blob._protocol import BlobStore
from cmo_server.config import ServerConfig

__all__ = ["open_blob_store"]


@asynccontextmanager
async def open_blob_store(config: ServerConfig) -> AsyncIterator[BlobStore]:
    """The blob store `config.blob.backend` names, ready to use; closed when the context exits.

    `filesystem` keeps blobs under `config.blob_root`; `s3` in the bucket of `config.blob.s3`, which is
    checked (and created if missing and allowed) before this yields.

    Raises:
        BlobStoreUnavailable: the storage cannot be used; the message names the setting to check.
    """
    if config.blob.backend == "s3":
        from cmo_server.blob._s3 import S3BlobStore  # minio is slow to import: only when used

        async with S3BlobStore(config.blob.s3) as s3:
            yield s3
    else:
        async with FilesystemBlobStore(config.blob_root) as filesystem:
            yield filesystem
