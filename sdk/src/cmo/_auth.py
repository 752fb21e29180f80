"""Credentials on every call: a bearer token in the `authorization` metadata (CMO_TOKEN)."""

from __future__ import annotations

from typing import Any

import grpc

__all__ = ["with_token"]


def with_token(channel: grpc.aio.Channel, token: str) -> grpc.aio.Channel:
    """`channel`, each call of which carries `token`; `channel` itself without one."""
    return _BearerChannel(channel, token) if token else channel


class _Carrying:
    """A method of the channel, its calls with the token added to their metadata."""

    __slots__ = ("_header", "_method")

    def __init__(self, method: Any, header: tuple[str, str]) -> None:
        self._method = method
        self._header = header

    def __call__(self, *args: Any, metadata: Any = None, **kwargs: Any) -> Any:
        carried = (*metadata, self._header) if metadata else (self._header,)
        return self._method(*args, metadata=carried, **kwargs)


# The token rides on each call's own metadata, not through a client interceptor: an intercepted
# stream relays every message through a task of its own (~40 µs a message, measured), and a
# worker's session is one stream of all its task calls. (grpc's stubs type the base as Any.)
class _BearerChannel(grpc.aio.Channel):  # type: ignore[misc]
    def __init__(self, channel: grpc.aio.Channel, token: str) -> None:
        self._channel = channel
        self._header = ("authorization", f"Bearer {token}")

    def unary_unary(self, *args: Any, **kwargs: Any) -> Any:
        return _Carrying(self._channel.unary_unary(*args, **kwargs), self._header)

    def unary_stream(self, *args: Any, **kwargs: Any) -> Any:
        return _Carrying(self._channel.unary_stream(*args, **kwargs), self._header)

    def stream_unary(self, *args: Any, **kwargs: Any) -> Any:
        return _Carrying(self._channel.stream_unary(*args, **kwargs), self._header)

    def stream_stream(self, *args: Any, **kwargs: Any) -> Any:
        return _Carrying(self._channel.stream_stream(*args, **kwargs), self._header)

    async def __aenter__(self) -> _BearerChannel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._channel.close()

    async def close(self, grace: float | None = None) -> None:
        await self._channel.close(grace)

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        return self._channel.get_state(try_to_connect)

    async def wait_for_state_change(self, last_observed_state: grpc.ChannelConnectivity) -> None:
        await self._channel.wait_for_state_change(last_observed_state)

    async def channel_ready(self) -> None:
        await self._channel.channel_ready()
