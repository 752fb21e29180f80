"""The one place where domain errors become gRPC statuses. No exception text leaks otherwise."""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import grpc

from cmo_server.blob import BlobStoreUnavailable
from cmo_server.errors import (
    AlreadyExists,
    CmoServerError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    StaleLease,
    Unauthenticated,
    Unavailable,
)

__all__ = ["RETRY_AFTER", "abort_with", "rpc", "rpc_stream", "status_for"]

logger = logging.getLogger(__name__)

S = TypeVar("S")
Req = TypeVar("Req")
Resp = TypeVar("Resp")
Handler = Callable[[S, Req, grpc.aio.ServicerContext], Awaitable[Resp]]

_CODES: tuple[tuple[type[CmoServerError], grpc.StatusCode], ...] = (
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (StaleLease, grpc.StatusCode.FAILED_PRECONDITION),
    (FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
    (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
)


def status_of(err: CmoServerError) -> grpc.StatusCode:
    """The gRPC status of a domain error."""
    return next((code for kind, code in _CODES if isinstance(err, kind)), grpc.StatusCode.INTERNAL)


def rpc(method: Handler[S, Req, Resp]) -> Handler[S, Req, Resp]:
    """Run a servicer method, turning domain errors into statuses and hiding unexpected ones."""

    @functools.wraps(method)
    async def wrapper(self: S, request: Req, context: grpc.aio.ServicerContext) -> Resp:
        try:
            return await method(self, request, context)
        except Exception as err:
            if _is_abort(err):
                raise
            await abort_with(context, err, method.__name__)
        raise AssertionError("unreachable")  # context.abort always raises

    return wrapper


def rpc_stream(
    method: Callable[[S, Req, grpc.aio.ServicerContext], AsyncIterator[Resp]],
) -> Callable[[S, Req, grpc.aio.ServicerContext], AsyncIterator[Resp]]:
    """`rpc` for a server-streaming method: an error ends the stream with its status."""

    @functools.wraps(method)
    async def wrapper(self: S, request: Req, context: grpc.aio.ServicerContext) -> AsyncIterator[Resp]:
        try:
            async for response in method(self, request, context):
                yield response
        except Exception as err:
            if _is_abort(err):
                raise
            await abort_with(context, err, method.__name__)

    return wrapper


RETRY_AFTER = "retry-after-ms"
"""Trailing metadata of a RESOURCE_EXHAUSTED that waiting cures: the milliseconds to wait."""


async def abort_with(context: grpc.aio.ServicerContext, err: Exception, method: str) -> None:
    """End the call with the status of `err` (and, for a rate limit, when to retry)."""
    if isinstance(err, ResourceExhausted) and err.retry_after:
        context.set_trailing_metadata(((RETRY_AFTER, str(math.ceil(err.retry_after * 1000))),))
    await context.abort(*status_for(err, method))


def status_for(err: Exception, method: str) -> tuple[grpc.StatusCode, str]:
    """The status a failed call answers: a domain error's own, else a plain one (logged)."""
    if isinstance(err, CmoServerError):
        return status_of(err), str(err)
    # The database being unreachable is the operator's problem, not a bug: say so plainly.
    if _is_connection_error(err):
        logger.warning("%s: database unavailable: %s", method, err)
        return grpc.StatusCode.UNAVAILABLE, "the database is unavailable; retry"
    if isinstance(err, BlobStoreUnavailable):  # S3 unreachable or refusing: same, for the blobs
        logger.warning("%s: blob store unavailable: %s", method, err)
        return grpc.StatusCode.UNAVAILABLE, "the blob store is unavailable; retry"
    logger.exception("%s failed", method, exc_info=err)
    return grpc.StatusCode.INTERNAL, "internal error; see the server log"


def _is_abort(err: BaseException) -> bool:
    # grpc.aio raises AbortError out of context.abort(); it must pass through untouched.
    return type(err).__name__ == "AbortError"


def _is_connection_error(err: BaseException) -> bool:
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return False
    return isinstance(err, psycopg.OperationalError)
