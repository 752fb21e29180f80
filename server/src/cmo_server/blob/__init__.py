"""Content-addressed storage of large payloads behind one `BlobStore` protocol.

Payloads above an inline threshold are stored once per distinct content, named by SHA-256, and
verified against it on every read. Backends: `FilesystemBlobStore`. `pack`/`unpack` turn a large
stored payload into a manifest over blobs and back.
"""

from cmo_server.blob._errors import BlobCorrupted, BlobError, BlobNotFound
from cmo_server.blob._filesystem import FilesystemBlobStore
from cmo_server.blob._offload import offload, resolve, should_offload
from cmo_server.blob._packing import ManifestError, is_manifest, pack, unpack
from cmo_server.blob._protocol import BlobRef, BlobStore

__all__ = [
    "BlobCorrupted",
    "BlobError",
    "BlobNotFound",
    "BlobRef",
    "BlobStore",
    "FilesystemBlobStore",
    "ManifestError",
    "is_manifest",
    "offload",
    "pack",
    "resolve",
    "should_offload",
    "unpack",
]
