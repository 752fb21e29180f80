"""Artifacts as recorded activities: `ref = await ctx.artifacts.put(data)`, `await ctx.artifacts.get(ref)`.

An artifact is content stored on the server once, named by its SHA-256, and referenced by an
`ArtifactRef` that fits in a state. A put is recorded with the ref it got, so a retried or replayed
step gets the same ref back without uploading again. A get is recorded with the ref too, not the
content: see `Artifacts.get`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import grpc

from cmo._activity import Activity
from cmo._retry import RetryPolicy
from cmo._rpc import rpc_error
from cmo.api.v1 import worker_service_pb2 as pb
from cmo.api.v1.common_pb2 import Namespace
from cmo.errors import ApplicationError

if TYPE_CHECKING:
    from cmo._graph import NodeContext
    from cmo.api.v1.worker_service_pb2_grpc import WorkerServiceStub

__all__ = ["ArtifactRef", "Artifacts"]

KIND_PUT = "artifact.put"
KIND_GET = "artifact.get"
DEFAULT_MEDIA_TYPE = "application/octet-stream"
CHUNK_BYTES = 1024 * 1024
"""PutArtifact's chunk size, as the server's GetArtifact uses: far below any message limit."""
CALL_TIMEOUT = timedelta(minutes=5)
"""One try of a put or get, long enough for the server's largest artifact on a slow link."""
RETRY = RetryPolicy(max_attempts=3, initial_interval=timedelta(milliseconds=200))
# The client's own mistakes: trying again cannot help.
_FINAL_CODES = frozenset(
    {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.RESOURCE_EXHAUSTED}
)
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class ArtifactRef:
    """Names an artifact stored on the server by the SHA-256 of its content; keep it in state."""

    digest: str
    """"sha256:" and the lowercase hex SHA-256 of the content."""
    size: int
    """Length of the content in bytes."""
    media_type: str = DEFAULT_MEDIA_TYPE
    """The media type given on put, e.g. "application/pdf"."""

    def __post_init__(self) -> None:
        _checked_digest(self.digest)


class Artifacts:
    """`ctx.artifacts`: put and get artifacts of the node's run, each call a recorded activity."""

    def __init__(self, ctx: NodeContext, stub: WorkerServiceStub | None) -> None:
        self._ctx = ctx
        self._stub = stub

    async def put(self, data: bytes, *, media_type: str = DEFAULT_MEDIA_TYPE) -> ArtifactRef:
        """Store `data` on the server as an artifact of this run; returns its ref.

        The record holds the ref, compared on replay by the content's digest: a retry or replay
        of the step returns the recorded ref without uploading, and a node that puts other content
        at this point is a nondeterminism error.

        Raises:
            ActivityError: the server refused the artifact (over its size limit, a bad media type)
                or could not be reached after retries.
        """
        data = bytes(data)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()

        async def upload(digest: str, size: int, media_type: str) -> dict[str, Any]:
            return await self._upload(data, digest, media_type)

        act = Activity(upload, name=KIND_PUT, retry=RETRY, timeout=CALL_TIMEOUT, kind=KIND_PUT)
        return _ref_from_record(await self._ctx.activity(act, digest, len(data), media_type))

    async def get(self, artifact: ArtifactRef | str, /) -> bytes:
        """The content of an artifact (a ref, or its digest string), verified against its SHA-256.

        The record holds the ref, not the content: content named by its SHA-256 never changes, so
        a retry or replay reads it again by digest (verified) and gets the same bytes, and the
        activity log does not keep a second copy of every artifact read. Offline replay therefore
        needs a server to read from (`Replayer(graphs, client=...)`).

        Raises:
            ActivityError: no artifact has this digest, or the server could not be reached.
            ValueError: the digest is malformed.
        """
        digest = artifact.digest if isinstance(artifact, ArtifactRef) else _checked_digest(artifact)
        fetched: list[bytes] = []

        async def download(digest: str) -> dict[str, Any]:
            content = await self._download(digest)
            fetched.append(content)
            return {"digest": digest, "size": len(content)}

        act = Activity(download, name=KIND_GET, retry=RETRY, timeout=CALL_TIMEOUT, kind=KIND_GET)
        recorded = await self._ctx.activity(act, digest)
        if fetched:
            return fetched[-1]
        return await self._download(recorded["digest"])  # answered from the record: read it again

    def _namespace(self) -> Namespace:
        return Namespace(tenant=self._ctx.tenant, project=self._ctx.project)

    def _require_stub(self, digest: str) -> WorkerServiceStub:
        if self._stub is None:
            raise RuntimeError(
                f"artifact {digest} must be read from a server: the record of ctx.artifacts.get holds only "
                "its digest. To replay offline, give the Replayer a client (Replayer(graphs, client=...))"
            )
        return self._stub

    async def _upload(self, data: bytes, digest: str, media_type: str) -> dict[str, Any]:
        stub = self._require_stub(digest)

        async def requests() -> AsyncIterator[pb.PutArtifactRequest]:
            yield pb.PutArtifactRequest(
                run_id=self._ctx.run_id, media_type=media_type, chunk=data[:CHUNK_BYTES], namespace=self._namespace()
            )
            for start in range(CHUNK_BYTES, len(data), CHUNK_BYTES):
                yield pb.PutArtifactRequest(chunk=data[start : start + CHUNK_BYTES])

        try:
            response = await stub.PutArtifact(requests(), timeout=CALL_TIMEOUT.total_seconds())
        except grpc.aio.AioRpcError as err:
            raise _error(err) from None
        stored = response.artifact
        if stored.digest != digest:
            raise ApplicationError(f"the server stored {stored.digest}, expected {digest}", type="ArtifactMismatch")
        return {"digest": stored.digest, "size": stored.size, "media_type": stored.media_type}

    async def _download(self, digest: str) -> bytes:
        stub = self._require_stub(digest)
        parts: list[bytes] = []
        try:
            async for response in stub.GetArtifact(
                pb.GetArtifactRequest(digest=digest, namespace=self._namespace()), timeout=CALL_TIMEOUT.total_seconds()
            ):
                parts.append(response.chunk)
        except grpc.aio.AioRpcError as err:
            raise _error(err) from None
        content = b"".join(parts)
        if "sha256:" + hashlib.sha256(content).hexdigest() != digest:
            raise ApplicationError(f"artifact {digest} arrived damaged", type="ArtifactCorrupted")
        return content


def _checked_digest(digest: str) -> str:
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise ValueError(f"digest must be 'sha256:' and 64 lowercase hex characters, got {digest!r}")
    return digest


def _ref_from_record(recorded: dict[str, Any]) -> ArtifactRef:
    return ArtifactRef(recorded["digest"], recorded["size"], recorded["media_type"])


def _error(err: grpc.aio.AioRpcError) -> Exception:
    if err.code() in _FINAL_CODES:
        return ApplicationError(err.details() or err.code().name, type=err.code().name, non_retryable=True)
    return rpc_error(err)
