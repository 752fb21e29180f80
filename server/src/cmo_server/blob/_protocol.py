"""The blob store contract every backend meets, proved by tests/integration/contract/test_blobs.py."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

__all__ = ["BlobRef", "BlobStore", "digest_of"]

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class BlobRef:
    """Names stored content by its SHA-256: identical bytes always get the same ref."""

    sha256: str
    """Lowercase hex SHA-256 digest of the content (64 characters)."""
    size: int
    """Length of the content in bytes."""

    def __post_init__(self) -> None:
        check_digest(self.sha256)
        if self.size < 0:
            raise ValueError(f"blob size must be >= 0, got {self.size}")

    @classmethod
    def of(cls, data: bytes) -> BlobRef:
        """The ref `data` is stored under (hashes it; stores nothing)."""
        return cls(hashlib.sha256(data).hexdigest(), len(data))


def check_digest(digest: str) -> str:
    """Return `digest` if it is 64 lowercase hex characters, else raise ValueError.

    Backends build paths and keys from digests, so anything else (`../x`) must never reach them.
    """
    if not isinstance(digest, str) or not _SHA256_HEX.fullmatch(digest):
        raise ValueError(f"not a SHA-256 hex digest (64 lowercase hex characters): {digest!r}")
    return digest


def digest_of(blob: BlobRef | str) -> str:
    """The checked hex digest of a ref, or of a digest given as a string."""
    return blob.sha256 if isinstance(blob, BlobRef) else check_digest(blob)


class BlobStore(Protocol):
    """Content-addressed storage of large payloads, keyed by SHA-256.

    A blob is immutable: its name is the hash of its bytes, so a put of identical content is a
    no-op that returns the same ref, and a reader either gets exactly the bytes that were put or an
    error, never a partial or damaged copy. Methods taking `BlobRef | str` accept a ref or its hex
    digest and raise ValueError for a string that is not a SHA-256 hex digest.
    """

    async def put(self, data: bytes, /) -> BlobRef:
        """Store `data` once and return its ref; idempotent, safe to call concurrently.

        Storing content that is already present writes nothing new. If the stored copy is damaged,
        the put replaces it with `data`.
        """

    async def get(self, blob: BlobRef | str, /) -> bytes:
        """The content of a blob, verified against its SHA-256 (and the ref's size) before return.

        Raises:
            BlobNotFound: no blob has this digest.
            BlobCorrupted: the stored bytes do not match the digest.
        """

    async def exists(self, blob: BlobRef | str, /) -> bool:
        """Whether a blob with this digest is stored; its content is not verified."""

    async def delete(self, blob: BlobRef | str, /) -> None:
        """Remove a blob, for garbage collection; deleting a missing blob does nothing.

        The caller must know that nothing references the blob any more: blobs are shared by
        every payload with the same content.
        """

    async def stale_blobs(self, older_than: datetime) -> list[str]:
        """Digests of the blobs last written (or put again) before `older_than`, for collection."""

    async def delete_if_stale(self, digest: str, older_than: datetime) -> bool:
        """Delete a blob only if it was still last written before `older_than`; True if deleted.

        A put of content already stored refreshes its time, so a blob that a new payload just
        started to reference again is spared even when the collector thought it unreferenced.
        """

    async def ping(self) -> None:
        """Check cheaply that the storage is usable, for health checks and start-up.

        What is checked depends on the backend (a directory is writable; an S3 bucket answers
        with the store's credentials). Nothing is written.

        Raises:
            BlobStoreUnavailable: it cannot; the message says why and which setting to check.
        """

    async def aclose(self) -> None:
        """Release resources; idempotent. The store cannot be used afterwards."""
