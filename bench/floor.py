"""The floor under one durable step: a gRPC round trip between two processes and one Postgres commit.

    uv run python bench/floor.py [--postgres URL]        # one JSON line; bench/peers measures it too

A step of W3 costs at least one worker -> server message and its answer, and one commit. This
measures both bare, on the same machine and in the same run as the workloads they are the floor
of: an empty unary call and a message pair on an open bidirectional stream (what a worker session
sends) between this process and an echo server process, both grpc.aio as CMO's; and an INSERT in
its own transaction from psycopg (fsync and all, as the server's statements are).

Beside them, the alternative to gRPC a worker session could take: the same message pair as
length-prefixed frames on a plain asyncio TCP stream (no HTTP/2, no grpc core). Each of the three
also reports the CPU it costs per call, in this process and in the echo server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import psycopg

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.cpu import process_seconds  # noqa: E402

CALLS = 2000
WARMUP = 200
COMMITS = 1000
_UNARY = "/bench.Floor/Unary"
_STREAM = "/bench.Floor/Stream"


def _identity(data: bytes) -> bytes:
    return data


async def _serve() -> None:
    """The echo server: answers each unary call and each stream message with its own bytes."""

    async def unary(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return request

    async def stream(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        async for request in requests:
            yield request

    handler = grpc.method_handlers_generic_handler(
        "bench.Floor",
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary, _identity, _identity),
            "Stream": grpc.stream_stream_rpc_method_handler(stream, _identity, _identity),
        },
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    frames = await asyncio.start_server(_echo_frames, "127.0.0.1", 0)
    print(port, frames.sockets[0].getsockname()[1], flush=True)
    await server.wait_for_termination()


_LENGTH = struct.Struct(">I")


async def _echo_frames(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer each length-prefixed frame with itself, as the gRPC stream handler does."""
    with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
        while True:
            (size,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
            writer.write(_LENGTH.pack(size) + await reader.readexactly(size))


@contextlib.contextmanager
def _echo_server() -> Any:
    """The echo server process: yields its pid, its gRPC port and its frame port."""
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--serve"], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        assert proc.stdout is not None
        grpc_port, frame_port = proc.stdout.readline().split()
        yield proc.pid, int(grpc_port), int(frame_port)
    finally:
        proc.terminate()
        proc.wait(10)


def _p50_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 3)


async def _timed(name: str, call: Callable[[], Awaitable[object]], server_pid: int, calls: int) -> dict[str, float]:
    """p50 round trip of `call`, and the CPU per call of this process and of the server."""
    for _ in range(WARMUP):
        await call()
    times = []
    cpu = time.process_time(), process_seconds(server_pid)
    for _ in range(calls):
        started = time.perf_counter()
        await call()
        times.append(time.perf_counter() - started)
    caller_cpu, server_cpu = time.process_time() - cpu[0], process_seconds(server_pid) - cpu[1]
    return {
        f"{name}_p50_ms": _p50_ms(times),
        f"{name}_cpu_us_caller": round(caller_cpu / calls * 1e6, 1),
        f"{name}_cpu_us_server": round(server_cpu / calls * 1e6, 1),
    }


async def grpc_floor(calls: int = CALLS) -> dict[str, float]:
    """p50 and CPU of an empty unary call, a message pair on an open stream, and a frame pair."""
    with _echo_server() as (pid, port, frame_port):
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await channel.channel_ready()
            unary = channel.unary_unary(_UNARY, request_serializer=_identity, response_deserializer=_identity)
            floor = await _timed("grpc_unary_round_trip", lambda: unary(b"x", timeout=10), pid, calls)
            stream = channel.stream_stream(_STREAM, request_serializer=_identity, response_deserializer=_identity)()

            async def pair() -> object:
                await stream.write(b"x")
                return await stream.read()

            floor |= await _timed("grpc_stream_message_pair", pair, pid, calls)
            await stream.done_writing()
        reader, writer = await asyncio.open_connection("127.0.0.1", frame_port)

        async def frame_pair() -> object:
            writer.write(_LENGTH.pack(1) + b"x")
            (size,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
            return await reader.readexactly(size)

        floor |= await _timed("socket_frame_pair", frame_pair, pid, calls)
        writer.close()
    return floor


def commit_floor(database_url: str, commits: int = COMMITS) -> dict[str, float]:
    """p50 of one INSERT in its own transaction (a WAL flush each), in ms."""
    times = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_floor (id bigserial PRIMARY KEY, v integer NOT NULL)")
        for i in range(WARMUP + commits):
            started = time.perf_counter()
            conn.execute("INSERT INTO bench_floor (v) VALUES (%s)", (i,))
            if i >= WARMUP:
                times.append(time.perf_counter() - started)
        conn.execute("DROP TABLE bench_floor")
    return {"postgres_commit_p50_ms": _p50_ms(times)}


def measure_floor(database_url: str) -> dict[str, float]:
    """Both floors, and their sum: what one durable step over gRPC cannot go below."""
    floor = {**asyncio.run(grpc_floor()), **commit_floor(database_url)}
    floor["step_floor_ms"] = round(floor["grpc_unary_round_trip_p50_ms"] + floor["postgres_commit_p50_ms"], 3)
    return floor


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--postgres", metavar="URL", help="a database to commit to; else a throwaway cluster")
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(_serve())
        return 0
    with contextlib.ExitStack() as stack:
        url = args.postgres
        if not url:
            from tests.support.postgres import throwaway_postgres

            url = stack.enter_context(throwaway_postgres())
        print(json.dumps({"floor": measure_floor(url)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
