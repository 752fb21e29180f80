"""Errors of the blob stores.

BlobError
 ├── BlobNotFound          no blob has this digest
 ├── BlobCorrupted         the stored bytes do not hash to their digest
 └── BlobStoreUnavailable  the storage cannot be reached or refuses the server (network, credentials)

They are not `cmo_server.errors.CmoServerError`s on purpose: those are a client's mistakes, each
mapped to a gRPC status with a message safe to show. A blob that is missing or damaged behind a
run that references it is lost data on the server, so it must surface as INTERNAL ("see the server
log"), which is what the API layer does with any other exception.
"""

from __future__ import annotations

__all__ = ["BlobCorrupted", "BlobError", "BlobNotFound", "BlobStoreUnavailable"]


class BlobError(Exception):
    """Base of the blob store errors; `digest` names the blob."""

    def __init__(self, digest: str, message: str) -> None:
        super().__init__(message)
        self.digest = digest


class BlobNotFound(BlobError):
    """No blob with this SHA-256 digest is stored (never put, deleted, or its write never finished)."""

    def __init__(self, digest: str) -> None:
        super().__init__(digest, f"blob sha256:{digest} not found")


class BlobCorrupted(BlobError):
    """A stored blob's bytes do not match its SHA-256 digest; the data is not returned."""

    def __init__(self, digest: str, *, actual: str, size: int, where: str) -> None:
        super().__init__(digest, f"blob sha256:{digest} is corrupted: {size} bytes at {where} hash to sha256:{actual}")
        self.actual = actual
        """Digest of the bytes actually read."""
        self.size = size
        """Number of bytes actually read."""
        self.where = where
        """Where the damaged copy lives (a path, an object key), for the operator."""


class BlobStoreUnavailable(BlobError):
    """The storage behind a blob store cannot be used: unreachable, refusing the credentials, misconfigured.

    The message says what failed and which setting to check; it never contains a secret. `digest`
    is empty: the fault is the store's, not one blob's.
    """

    def __init__(self, message: str) -> None:
        super().__init__("", message)
