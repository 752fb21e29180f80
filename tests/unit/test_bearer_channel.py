"""A client's token goes with every call of every kind, beside the call's own metadata."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from cmo._auth import with_token


def _seen(context: Any) -> bytes:
    metadata = dict(context.invocation_metadata())
    return f"{metadata.get('authorization', '-')}|{metadata.get('x-mine', '-')}".encode()


async def _unary(request: bytes, context: Any) -> bytes:
    return _seen(context)


async def _unary_stream(request: bytes, context: Any) -> AsyncIterator[bytes]:
    yield _seen(context)


async def _stream_unary(requests: AsyncIterator[bytes], context: Any) -> bytes:
    async for _ in requests:
        pass
    return _seen(context)


async def _stream_stream(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
    async for _ in requests:
        yield _seen(context)


async def test_every_kind_of_call_carries_the_token_and_keeps_its_own_metadata():
    server = grpc.aio.server()
    handlers = {
        "UU": grpc.unary_unary_rpc_method_handler(_unary),
        "US": grpc.unary_stream_rpc_method_handler(_unary_stream),
        "SU": grpc.stream_unary_rpc_method_handler(_stream_unary),
        "SS": grpc.stream_stream_rpc_method_handler(_stream_stream),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("t.Echo", handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with with_token(grpc.aio.insecure_channel(f"127.0.0.1:{port}"), "t0k3n") as channel:
            mine = (("x-mine", "yes"),)
            assert await channel.unary_unary("/t.Echo/UU")(b"") == b"Bearer t0k3n|-"
            assert await channel.unary_unary("/t.Echo/UU")(b"", metadata=mine) == b"Bearer t0k3n|yes"
            assert await channel.unary_unary("/t.Echo/UU")(b"", metadata=grpc.aio.Metadata(*mine)) == (
                b"Bearer t0k3n|yes"
            )
            assert [r async for r in channel.unary_stream("/t.Echo/US")(b"", metadata=mine)] == [b"Bearer t0k3n|yes"]
            assert await channel.stream_unary("/t.Echo/SU")(iter([b"a", b"b"])) == b"Bearer t0k3n|-"
            session = channel.stream_stream("/t.Echo/SS")(metadata=mine)
            for message in (b"a", b"b"):
                await session.write(message)
                assert await session.read() == b"Bearer t0k3n|yes"
            await session.done_writing()
            assert channel.get_state() is grpc.ChannelConnectivity.READY
        plain = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        assert with_token(plain, "") is plain  # no token: the channel as it is
        assert await plain.unary_unary("/t.Echo/UU")(b"") == b"-|-"
        await plain.close()
    finally:
        await server.stop(None)
