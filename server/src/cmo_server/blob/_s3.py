"""Blobs as objects in an S3-compatible bucket: `<prefix>sha256/ab/cd/<sha256>`, through the minio client."""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import os
from collections.abc import Callable
from datetime import datetime
from types import TracebackType
from typing import TypeVar

import certifi
import urllib3
from minio import Minio
from minio.commonconfig import REPLACE, CopySource
from minio.datatypes import Object
from minio.error import MinioException, S3Error

from cmo_server.blob._errors import BlobCorrupted, BlobError, BlobNotFound, BlobStoreUnavailable
from cmo_server.blob._protocol import BlobRef, digest_of
from cmo_server.config import S3Settings

__all__ = ["S3BlobStore", "make_client"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

CONNECT_TIMEOUT = 10.0
"""Seconds to open a connection to the endpoint."""
READ_TIMEOUT = 60.0
"""Seconds a response may stall; large enough for a 64 MiB artifact over a slow link."""
RETRIES = 3
"""Retries of a failed request (connection errors, 5xx); the first retry is immediate, then 0.4 s, 0.8 s."""
POOL_SIZE = 16
"""Connections kept to the endpoint: more than the default thread pool can use at once."""
SHA256_METADATA = "x-amz-meta-sha256"
"""Object metadata recording the content's digest, set by every put."""

# A single PUT up to this size keeps the object's ETag the MD5 of its bytes (which lets a put
# see that a stored copy was replaced); S3 caps single PUTs at 5 GiB.
_MAX_SINGLE_PUT = 5 * 1024**3
_MIN_PART = 5 * 1024**2
_CREDENTIAL_ERRORS = frozenset({"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken"})


def make_client(settings: S3Settings) -> tuple[Minio, urllib3.PoolManager]:
    """A minio client for `settings`, and the connection pool it uses (closed by its owner).

    TLS follows `settings.tls`; certificates are always verified, against `settings.ca_file` when
    set, else `$SSL_CERT_FILE`, else the public CAs. Requests have timeouts and a few retries,
    unlike the client's defaults (5-minute timeouts, which would stall a health check).
    """
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT, read=READ_TIMEOUT),
        maxsize=POOL_SIZE,
        cert_reqs="CERT_REQUIRED",
        ca_certs=settings.ca_file or os.environ.get("SSL_CERT_FILE") or certifi.where(),
        retries=urllib3.Retry(total=RETRIES, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
    )
    client = Minio(
        settings.host.rstrip("/"),
        access_key=settings.access_key,
        secret_key=settings.secret_key,
        secure=settings.tls,
        region=settings.region or None,
        http_client=http,
    )
    return client, http


_MISSING = ("NoSuchKey", "NoSuchObject", "ResourceNotFound")
"""S3 error codes that mean the object is not there (servers differ in which they send)."""


class S3BlobStore:
    """A `BlobStore` in an S3 bucket, shareable by any number of server replicas.

    A blob is the object `<prefix>sha256/ab/cd/<digest>`, written by one PUT, so S3 shows it
    complete or not at all: a writer killed mid-upload leaves nothing. Each object carries its
    digest as metadata (`x-amz-meta-sha256`), and every get hashes what it downloaded.

    A put first asks for the object's metadata (one HEAD): an object of the right size whose
    digest metadata matches, and whose ETag (the MD5 S3 computes over the bytes it received)
    matches the content, is left alone. Anything else is uploaded over it, which repairs a copy
    that someone replaced. A HEAD costs less than the upload it saves (measured against a local
    SeaweedFS: 2-5 ms against 8-10 ms for 300 KiB). A bucket whose ETags are not MD5s (SSE-KMS on
    AWS) gets every put uploaded again: correct, but without that saving.

    Use it as an async context manager: entering checks that the bucket is there (creating it when
    `settings.create_bucket`); connection, credential and bucket problems raise
    `BlobStoreUnavailable` naming the setting to check. The minio client is synchronous, so its
    calls run in `asyncio.to_thread`.
    """

    def __init__(self, settings: S3Settings) -> None:
        self._settings = settings
        self._bucket = settings.bucket
        self._prefix = settings.prefix
        self._client, self._http = make_client(settings)
        self._closed = False

    @property
    def bucket(self) -> str:
        """The bucket that holds the blobs."""
        return self._bucket

    def key(self, blob: BlobRef | str) -> str:
        """The object key of a blob: `<prefix>sha256/ab/cd/<digest>`."""
        digest = digest_of(blob)
        return f"{self._prefix}sha256/{digest[:2]}/{digest[2:4]}/{digest}"

    async def __aenter__(self) -> S3BlobStore:
        try:
            await self.prepare()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def prepare(self) -> None:
        """Check that the bucket exists and the credentials are accepted; create the bucket if allowed.

        Raises:
            BlobStoreUnavailable: the endpoint is unreachable, refuses the credentials, or the
                bucket is missing and `create_bucket` is off.
        """
        self._check_open()
        await asyncio.to_thread(self._call, "check the bucket", self._prepare)

    async def put(self, data: bytes, /) -> BlobRef:
        """Store `data` once and return its ref; see `BlobStore.put`."""
        self._check_open()
        data = bytes(data)
        return await asyncio.to_thread(self._call, "put a blob", self._put, data)

    async def get(self, blob: BlobRef | str, /) -> bytes:
        """The verified content of a blob; see `BlobStore.get`.

        Raises:
            BlobNotFound: no blob has this digest.
            BlobCorrupted: the stored bytes do not match the digest.
            BlobStoreUnavailable: S3 cannot be used.
        """
        self._check_open()
        digest = digest_of(blob)
        size = blob.size if isinstance(blob, BlobRef) else None
        return await asyncio.to_thread(self._call, "get a blob", self._get, digest, size)

    async def exists(self, blob: BlobRef | str, /) -> bool:
        """Whether a blob with this digest is stored; see `BlobStore.exists`."""
        self._check_open()
        key = self.key(blob)
        return await asyncio.to_thread(self._call, "look up a blob", self._exists, key)

    async def delete(self, blob: BlobRef | str, /) -> None:
        """Remove a blob if present; see `BlobStore.delete`."""
        self._check_open()
        key = self.key(blob)
        await asyncio.to_thread(self._call, "delete a blob", self._client.remove_object, self._bucket, key)

    async def stale_blobs(self, older_than: datetime) -> list[str]:
        """See `BlobStore.stale_blobs` (the objects' Last-Modified times)."""
        self._check_open()
        return await asyncio.to_thread(self._call, "list the blobs", self._stale, older_than)

    async def delete_if_stale(self, digest: str, older_than: datetime) -> bool:
        """See `BlobStore.delete_if_stale`."""
        self._check_open()
        key = self.key(digest)
        return await asyncio.to_thread(self._call, "delete a blob", self._delete_if_stale, key, older_than)

    def _stale(self, before: datetime) -> list[str]:
        found = []
        for item in self._client.list_objects(self._bucket, prefix=f"{self._prefix}sha256/", recursive=True):
            name = (item.object_name or "").rpartition("/")[2]
            if len(name) == 64 and item.last_modified is not None and item.last_modified < before:
                found.append(name)
        return found

    def _delete_if_stale(self, key: str, before: datetime) -> bool:
        stat = self._stat(key)
        if stat is None or stat.last_modified is None or stat.last_modified >= before:
            return False  # put again since it was listed
        self._client.remove_object(self._bucket, key)
        return True

    async def ping(self) -> None:
        """One HEAD of the bucket: reachable, credentials accepted, bucket there; see `BlobStore.ping`."""
        self._check_open()
        await asyncio.to_thread(self._call, "check the bucket", self._ping)

    async def aclose(self) -> None:
        """Close the pooled connections; idempotent."""
        if not self._closed:
            self._closed = True
            self._http.clear()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"blob store in bucket {self._bucket} is closed")

    def _where(self, key: str) -> str:
        return f"s3://{self._bucket}/{key}"

    def _prepare(self) -> None:
        if self._client.bucket_exists(self._bucket):
            return
        if not self._settings.create_bucket:
            raise self._missing_bucket()
        try:
            self._client.make_bucket(self._bucket, location=self._settings.region or None)
        except S3Error as err:
            if err.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):  # another replica made it
                raise
        logger.info("created bucket %s at %s for blobs", self._bucket, self._settings.host)

    def _ping(self) -> None:
        if not self._client.bucket_exists(self._bucket):
            raise self._missing_bucket()

    def _put(self, data: bytes) -> BlobRef:
        ref = BlobRef.of(data)
        key = self.key(ref)
        if self._already_stored(key, ref, data):
            # Copied onto itself, the object gets a new Last-Modified: a collector that listed it
            # as stale before this put then spares it (see `delete_if_stale`).
            self._client.copy_object(
                self._bucket,
                key,
                CopySource(self._bucket, key),
                metadata={SHA256_METADATA: ref.sha256},
                metadata_directive=REPLACE,
            )
            return ref
        self._client.put_object(
            self._bucket,
            key,
            io.BytesIO(data),
            ref.size,
            metadata={SHA256_METADATA: ref.sha256},
            part_size=min(max(ref.size, _MIN_PART), _MAX_SINGLE_PUT),
        )
        return ref

    def _already_stored(self, key: str, ref: BlobRef, data: bytes) -> bool:
        stat = self._stat(key)
        if stat is None:
            return False
        metadata = stat.metadata or {}
        if stat.size != ref.size or metadata.get(SHA256_METADATA) != ref.sha256:
            return False
        etag = (stat.etag or "").strip('"')
        if len(etag) == 32 and "-" not in etag:  # a single-part upload's ETag is the MD5 of its bytes
            return etag == hashlib.md5(data, usedforsecurity=False).hexdigest()
        return True

    def _get(self, digest: str, size: int | None) -> bytes:
        key = self.key(digest)
        try:
            response = self._client.get_object(self._bucket, key)
        except S3Error as err:
            if err.code in _MISSING:
                raise BlobNotFound(digest) from None
            raise
        try:
            data = response.read()
        finally:
            response.close()
            response.release_conn()
        actual = BlobRef.of(data)
        if actual.sha256 != digest or (size is not None and actual.size != size):
            raise BlobCorrupted(digest, actual=actual.sha256, size=actual.size, where=self._where(key))
        return data

    def _exists(self, key: str) -> bool:
        return self._stat(key) is not None

    def _stat(self, key: str) -> Object | None:
        """The object's metadata, or None if there is no such object."""
        try:
            return self._client.stat_object(self._bucket, key)
        except S3Error as err:
            if err.code in _MISSING:
                return None
            raise

    def _missing_bucket(self) -> BlobStoreUnavailable:
        return BlobStoreUnavailable(
            f"S3 bucket {self._bucket!r} (S3_BUCKET) does not exist at {self._settings.host}"
            " and CMO_S3_CREATE_BUCKET is false: create it, or let the server create it"
        )

    def _call(self, what: str, operation: Callable[..., T], *args: object) -> T:
        """Run one client operation, turning the client's errors into `BlobStoreUnavailable`."""
        try:
            return operation(*args)
        except BlobError:
            raise
        except (MinioException, urllib3.exceptions.HTTPError) as err:
            raise self._unavailable(what, err) from None

    def _unavailable(self, what: str, err: Exception) -> BlobStoreUnavailable:
        endpoint = f"S3 endpoint {self._settings.host} (S3_ENDPOINT, {'TLS' if self._settings.tls else 'plain HTTP'})"
        if isinstance(err, S3Error):
            if err.code in _CREDENTIAL_ERRORS:
                return BlobStoreUnavailable(
                    f"cannot {what}: {endpoint} refused access to bucket {self._bucket!r} ({err.code}: {err.message});"
                    " check S3_ACCESS_KEY, S3_SECRET_KEY and the key's permissions on the bucket"
                )
            if err.code == "NoSuchBucket":
                return BlobStoreUnavailable(
                    f"cannot {what}: S3 bucket {self._bucket!r} (S3_BUCKET) does not exist at {self._settings.host}"
                )
            return BlobStoreUnavailable(f"cannot {what}: {endpoint} answered {err.code}: {err.message}")
        reason = err.reason if isinstance(err, urllib3.exceptions.MaxRetryError) and err.reason else err
        hint = ""
        if isinstance(reason, urllib3.exceptions.SSLError):
            hint = "; check S3_SECURE (the scheme of S3_ENDPOINT) and CMO_S3_CA_FILE"
        return BlobStoreUnavailable(f"cannot {what}: {endpoint} is unreachable: {reason}{hint}")
