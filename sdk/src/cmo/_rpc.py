"""Channel set-up, retries of UNAVAILABLE with back-off, and gRPC errors as `cmo.errors`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc

from cmo.errors import RpcError

__all__ = ["address_problem", "call", "open_channel", "rpc_error", "wait_ready"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# Codes a caller may retry: the server was down or restarting, or dropped the call under overload
# (gRPC cancels calls beyond its pending-request limit). RESOURCE_EXHAUSTED is not among them: the
# server answers it for a payload over its size limit, which no retry can fix.
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})
RETRY_AFTER = "retry-after-ms"
"""What a RESOURCE_EXHAUSTED under a rate limit carries: the milliseconds until a call would pass."""
RATE_LIMIT_PATIENCE = 30.0
"""Seconds a call keeps retrying a rate limit: the server refused it before doing anything, so any
call may try again (idempotent or not)."""


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


def address_problem(target: str) -> str:
    """What is wrong with a server address given as a URL (`http://host:port`); empty when nothing is."""
    scheme, sep, rest = target.partition("://")
    if sep and scheme.lower() in ("http", "https", "grpc", "grpcs"):
        return f"the address is host:port, without {scheme}://: try {rest.rstrip('/')!r}"
    return ""


async def wait_ready(channel: grpc.aio.Channel, target: str, *, timeout: float | None, fail_fast: bool = False) -> None:
    """Wait until the channel is connected.

    `timeout` None waits as long as it takes, logging (less and less often) that it waits.
    `fail_fast` gives up at the first connection attempt that fails (refused, a name that does
    not resolve, a TLS handshake refused) instead of waiting for a server to come up.

    Raises:
        ConnectionError: no server answered within `timeout`, or (`fail_fast`) the connection
            failed; the message says why, as far as gRPC tells.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = None if timeout is None else started + timeout
    note_at, note_every = started, 1.0
    state = channel.get_state(try_to_connect=True)
    while state is not grpc.ChannelConnectivity.READY:
        now = loop.time()
        if state is grpc.ChannelConnectivity.TRANSIENT_FAILURE:
            if fail_fast:
                raise ConnectionError(f"no CMO server at {target}: {await _why_not_connected(channel)}")
            if timeout is None and now >= note_at:
                waited = f" (for {now - started:.0f}s)" if now - started >= 1 else ""
                why = await _why_not_connected(channel)
                logger.warning("no CMO server at %s yet: %s; waiting for it%s", target, why, waited)
                note_at, note_every = now + note_every, min(note_every * 2, 60.0)
        if deadline is not None and now >= deadline:
            raise ConnectionError(f"no CMO server answered at {target} within {timeout:g}s")
        # gRPC reconnects with its own back-off meanwhile; each change of state wakes this loop.
        left = note_every if deadline is None else deadline - now
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(channel.wait_for_state_change(state), left)
        state = channel.get_state(try_to_connect=True)


async def _why_not_connected(channel: grpc.aio.Channel) -> str:
    """Why the channel is not connected, as gRPC says: the error of a call that does not wait for it."""
    probe = channel.unary_unary("/grpc.health.v1.Health/Check", request_serializer=bytes, response_deserializer=bytes)
    try:
        await probe(b"", timeout=2.0, wait_for_ready=False)
    except grpc.aio.AioRpcError as err:
        if err.code() is not grpc.StatusCode.UNAVAILABLE:
            return "it answers now"
        details = err.details() or ""
        if "Connection refused" in details:
            return "connection refused"
        if "lookup" in details or "resolving" in details:
            return "the host name does not resolve"
        return details.rpartition("last error: ")[2] or err.code().name
    return "it answers now"


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

    Only idempotent calls should use a non-zero `retry_for`. A call refused by a rate limit is
    tried again after the delay the server names, for up to RATE_LIMIT_PATIENCE s, whatever
    `retry_for`. `metadata` goes with the call.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    give_up = started + retry_for
    delay = 0.05
    while True:
        try:
            if metadata:
                return await fn(request, timeout=timeout, metadata=tuple(metadata))
            return await fn(request, timeout=timeout)
        except grpc.aio.AioRpcError as err:
            code = err.code()
            wait = _rate_limited_for(err)
            if wait is not None and loop.time() + wait <= started + RATE_LIMIT_PATIENCE:
                logger.debug("%s: rate limited, retrying in %.2fs", getattr(fn, "_method", fn), wait)
                await asyncio.sleep(wait * (1 + 0.2 * random.random()))
                continue
            if code not in RETRYABLE or loop.time() + delay > give_up:
                raise on_error(err) from None
            logger.debug("%s: %s, retrying in %.2fs", getattr(fn, "_method", fn), code.name, delay)
        await asyncio.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 2.0)


def _rate_limited_for(err: grpc.aio.AioRpcError) -> float | None:
    """The seconds a rate limit asks to wait, if `err` is one."""
    if err.code() is not grpc.StatusCode.RESOURCE_EXHAUSTED:
        return None
    for key, value in err.trailing_metadata() or ():
        if key == RETRY_AFTER:
            try:
                return max(0.0, min(float(value) / 1000, RATE_LIMIT_PATIENCE))
            except ValueError:
                return None
    return None
