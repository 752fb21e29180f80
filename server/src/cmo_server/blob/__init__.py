"""Content-addressed storage of large payloads behind one `BlobStore` protocol.

Payloads above an inline threshold are stored once per distinct content, named by SHA-256, and
verified against it on every read. Backends: `FilesystemBlobStore` and `S3BlobStore`, chosen by
`open_blob_store` from the server's configuration. `pack`/`unpack` turn a large stored payload
into a manifest over blobs and back.

`S3BlobStore` is imported on first use: the minio client takes about 0.4 s to import (measured on
2 cores; most of it pycryptodome through cffi), which a server on the filesystem backend, and
every process the CLI starts, need not pay.
"""

from typing import TYPE_CHECKING

from cmo_server.blob._errors import BlobCorrupted, BlobError, BlobNotFound, BlobStoreUnavailable
from cmo_server.blob._filesystem import FilesystemBlobStore
from cmo_server.blob._offload import offload, resolve, should_offload
from cmo_server.blob._open import open_blob_store
from cmo_server.blob._packing import ManifestError, is_manifest, manifest_digests, pack, unpack
from cmo_server.blob._protocol import BlobRef, BlobStore

if TYPE_CHECKING:
    from cmo_server.blob._s3 import S3BlobStore

__all__ = [
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


def __getattr__(name: str) -> object:
    if name == "S3BlobStore":
        from cmo_server.blob._s3 import S3BlobStore

        return S3BlobStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
