"""Artifacts: content a run's nodes put and read back, stored once in the blob store by SHA-256.

The content goes to the blob store; the store keeps a record of which run put which content, so
a garbage collector can later tell which blobs are referenced. Only content some run put as an
artifact can be read back: the blob store also holds pieces of large payloads, which are not
artifacts.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable

from cmo_server.blob import BlobRef, BlobStore
from cmo_server.domain import Artifact, Namespace
from cmo_server.errors import InvalidArgument, NotFound, ResourceExhausted, shown
from cmo_server.store import Store

__all__ = ["DEFAULT_MEDIA_TYPE", "DIGEST_PREFIX", "Artifacts", "check_media_type", "format_digest", "parse_digest"]

DIGEST_PREFIX = "sha256:"
DEFAULT_MEDIA_TYPE = "application/octet-stream"
MAX_MEDIA_TYPE_LENGTH = 255

_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")
# type/subtype with optional parameters (RFC 6838 names), printable ASCII only.
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9][\w!#$&^.+-]*/[A-Za-z0-9][\w!#$&^.+-]*(\s*;[ -~]*)?")


def parse_digest(field: str, digest: str) -> str:
    """The hex SHA-256 of a digest written `sha256:<64 lowercase hex characters>`.

    Raises:
        InvalidArgument: naming `field`, for anything else.
    """
    found = _DIGEST.fullmatch(digest)
    if found is None:
        raise InvalidArgument(field, f"must be 'sha256:' and 64 lowercase hex characters, got {shown(digest)}")
    return found.group(1)


def format_digest(sha256: str) -> str:
    """A hex SHA-256 as a digest string, `sha256:<hex>`."""
    return DIGEST_PREFIX + sha256


def check_media_type(field: str, media_type: str) -> str:
    """A media type such as `application/pdf`; empty means `DEFAULT_MEDIA_TYPE`.

    Raises:
        InvalidArgument: naming `field`, when it is too long or not `type/subtype[; parameters]`.
    """
    if not media_type:
        return DEFAULT_MEDIA_TYPE
    if len(media_type) > MAX_MEDIA_TYPE_LENGTH:
        raise InvalidArgument(field, f"is {len(media_type)} characters long, the limit is {MAX_MEDIA_TYPE_LENGTH}")
    if not _MEDIA_TYPE.fullmatch(media_type):
        raise InvalidArgument(field, f"must be a media type such as 'application/pdf', got {shown(media_type)}")
    return media_type


class Artifacts:
    """Puts and gets artifacts: content in `blobs`, records of who put what in `store`."""

    def __init__(self, store: Store, blobs: BlobStore, *, max_bytes: int) -> None:
        self._store = store
        self._blobs = blobs
        self._max_bytes = max_bytes

    async def check_run(self, namespace: Namespace, run_id: str) -> None:
        """Raise NotFound unless the run exists: worth knowing before the content is sent."""
        if await self._store.get_run(namespace, run_id) is None:
            raise NotFound(f"run {shown(run_id)} does not exist")

    async def put(self, namespace: Namespace, run_id: str, media_type: str, chunks: AsyncIterable[bytes]) -> Artifact:
        """Store the content the chunks carry as an artifact of the run; idempotent.

        The content is held in memory until it is complete (at most the limit), then written
        once: its name is its hash, known only at the end.

        Raises:
            NotFound: the run does not exist.
            ResourceExhausted: the content is larger than the limit.
        """
        parts: list[bytes] = []
        size = 0
        async for chunk in chunks:
            size += len(chunk)
            if size > self._max_bytes:
                raise ResourceExhausted(
                    f"artifact: more than {self._max_bytes} bytes, the limit (CMO_MAX_ARTIFACT_BYTES)"
                )
            parts.append(chunk)
        ref = await self._blobs.put(b"".join(parts))
        # The record names a blob that is there already: a crash in between leaves only an
        # unreferenced blob, never a record without content.
        return await self._store.add_artifact(Artifact(namespace, run_id, ref.sha256, ref.size, media_type))

    async def get(self, namespace: Namespace, sha256: str) -> tuple[Artifact, bytes]:
        """An artifact's record and its content, verified against its digest.

        Content is stored once whoever puts it, but it is found only by a namespace whose runs
        put it: knowing a digest is no way into another namespace's artifacts.

        Raises:
            NotFound: no run of the namespace put this content as an artifact.
            BlobNotFound, BlobCorrupted: the content is lost or damaged (a server fault: INTERNAL).
        """
        artifact = await self._store.find_artifact(namespace, sha256)
        if artifact is None:
            raise NotFound(f"no artifact has the digest {format_digest(sha256)}")
        return artifact, await self._blobs.get(BlobRef(sha256, artifact.size))
