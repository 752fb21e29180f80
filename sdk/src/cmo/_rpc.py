"""Channel set-up, retries of UNAVAILABLE with back-off, and gRPC errors as `cmo.errors`."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc

from cmo.errors import RpcError

__all__ = ["call", "open_channel", "rpc_error"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# Codes a caller may retry: the server was down or restarting, or dropped the call under overload
# (gRPC cancels calls beyond its pending-request limit). RESOURCE_EXHAUSTED is not among them: the
# server answers it for a payload over its size limit, which no retry can fix.
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})


def open_channel(
    target: str, *, interceptors: Sequence[Any] = (), credentials: grpc.ChannelCredentials | None = None
) -> grpc.aio.Channel:
    """A channel with keep-alives and large-message limits: over TLS with `credentials`, else plaintext.

    Calls are spread over every address the target resolves to (a DNS name with several
    addresses, or "ipv4:10.0.0.1:7233,10.0.0.2:7233"), skipping servers that are down: server
    replicas are stateless, so any one can take any call.
    """
    options = [
        ("grpc.lb_policy_name", "round_robin"),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 2_000),
    ]
    if credentials is None:
        return grpc.aio.insecure_channel(target, interceptors=list(interceptors) or None, options=options)
    return grpc.aio.secure_channel(target, credentials, interceptors=list(interceptors) or None, options=options)


def rpc_error(err: grpc.aio.AioRpcError) -> RpcError:
    """The SDK error for a failed call."""
    return RpcError(err.code().name, err.details() or "")


async def call(
    fn: Callable[..., Awaitable[T]],
    request: Any,
    *,
    timeout: float,
    retry_for: float = 30.0,
    on_error: Callable[[grpc.aio.AioRpcError], Exception] = rpc_error,
    metadata: Sequence[tuple[str, str]] = (),
) -> T:
    """Call a unary method, retrying UNAVAILABLE with jittered back-off for up to `retry_for` s.

    Only idempotent calls should use a non-zero `retry_for`. `metadata` goes with the call.
    """
    loop = asyncio.get_running_loop()
    give_up = loop.time() + retry_for
    delay = 0.05
    while True:
        try:
            if metadata:
                return await fn(request, timeout=timeout, metadata=tuple(metadata))
            return await fn(request, timeout=timeout)
        except grpc.aio.AioRpcError as err:
            code = err.code()
            if code not in RETRYABLE or loop.time() + delay > give_up:
                raise on_error(err) from None
            logger.debug("%s: %s, retrying in %.2fs", getattr(fn, "_method", fn), code.name, delay)
        await asyncio.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 2.0)
