"""The floor under one durable step: a gRPC round trip between two processes and one Postgres commit.

    uv run python bench/floor.py [--postgres URL]        # one JSON line; bench/peers measures it too

A step of W3 costs at least one worker -> server message and its answer, and one commit. This
measures both bare, on the same machine and in the same run as the workloads they are the floor
of: an empty unary call and a message pair on an open bidirectional stream (what a worker session
sends) between this process and an echo server process, both grpc.aio as CMO's; and an INSERT in
its own transaction from psycopg (fsync and all, as the server's statements are).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import psycopg

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

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
    print(port, flush=True)
    await server.wait_for_termination()


@contextlib.contextmanager
def _echo_server() -> Any:
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--serve"], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        assert proc.stdout is not None
        yield int(proc.stdout.readline())
    finally:
        proc.terminate()
        proc.wait(10)


def _p50_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 3)


async def grpc_floor(calls: int = CALLS) -> dict[str, float]:
    """p50 of an empty unary round trip and of a message pair on an open stream, in ms."""
    with _echo_server() as port:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await channel.channel_ready()
            unary = channel.unary_unary(_UNARY, request_serializer=_identity, response_deserializer=_identity)
            times = []
            for i in range(WARMUP + calls):
                started = time.perf_counter()
                await unary(b"x", timeout=10)
                if i >= WARMUP:
                    times.append(time.perf_counter() - started)
            stream = channel.stream_stream(_STREAM, request_serializer=_identity, response_deserializer=_identity)()
            pairs = []
            for i in range(WARMUP + calls):
                started = time.perf_counter()
                await stream.write(b"x")
                await stream.read()
                if i >= WARMUP:
                    pairs.append(time.perf_counter() - started)
            await stream.done_writing()
    return {"grpc_unary_round_trip_p50_ms": _p50_ms(times), "grpc_stream_message_pair_p50_ms": _p50_ms(pairs)}


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
