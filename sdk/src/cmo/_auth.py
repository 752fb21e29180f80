"""Credentials on every call: a bearer token in the `authorization` metadata (CMO_TOKEN)."""

from __future__ import annotations

from typing import Any

import grpc

__all__ = ["bearer_interceptors"]


def _with_token(details: grpc.aio.ClientCallDetails, header: tuple[str, str]) -> grpc.aio.ClientCallDetails:
    metadata = grpc.aio.Metadata(*(details.metadata or ()))
    metadata.add(*header)
    return grpc.aio.ClientCallDetails(
        method=details.method,
        timeout=details.timeout,
        metadata=metadata,
        credentials=details.credentials,
        wait_for_ready=details.wait_for_ready,
    )


class _Header:
    def __init__(self, token: str) -> None:
        self.header = ("authorization", f"Bearer {token}")


# grpc files an interceptor under the first of the four kinds it is an instance of: one class each.
# (Its stubs type the bases as Any.)
class _UnaryUnary(_Header, grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_with_token(details, self.header), request)


class _UnaryStream(_Header, grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_with_token(details, self.header), request)


class _StreamUnary(_Header, grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(_with_token(details, self.header), requests)


class _StreamStream(_Header, grpc.aio.StreamStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(_with_token(details, self.header), requests)


def bearer_interceptors(token: str) -> list[Any]:
    """Interceptors that send `token` with every call, of every kind; none without one."""
    if not token:
        return []
    return [kind(token) for kind in (_UnaryUnary, _UnaryStream, _StreamUnary, _StreamStream)]
