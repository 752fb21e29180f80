"""A worker process for the end-to-end tests.

    python -m tests.e2e.worker_main --address HOST:PORT --graph counter --concurrency N --marker-dir DIR \
        [--calls session|unary]

Registers the graph, prints `ready <worker_id>` on stdout (the harness waits for that line), then
serves until SIGTERM (graceful) or SIGKILL.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import cmo
from cmo._convert import graph_to_proto
from cmo.api.v1 import worker_service_pb2
from tests.e2e.graphs import GRAPHS, Markers


async def serve(args: argparse.Namespace) -> None:
    worker_id = args.worker_id or f"e2e-worker-{os.getpid()}"
    graph = GRAPHS[args.graph](Markers(Path(args.marker_dir)), worker_id)
    async with await cmo.Client.connect(args.address, wait_ready=30) as client:
        request = worker_service_pb2.RegisterGraphRequest(graph=graph_to_proto(graph))
        await client.worker_stub.RegisterGraph(request, timeout=30)
        worker = cmo.Worker(
            client,
            [graph],
            concurrency=args.concurrency,
            worker_id=worker_id,
            shutdown_grace=2.0,
            session=args.calls == "session",
            messaging=_messaging(args.redis),
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.shutdown)
        print(f"ready {worker_id}", flush=True)
        await worker.run()


def _messaging(redis_url: str) -> Any:
    """The worker's A2A messaging (for graphs that invoke specialists), when --redis is given."""
    if not redis_url:
        return None
    from cmo.a2a.invoke import Messaging
    from cmo.a2a.transports.redis import RedisTransport
    from tests.e2e.specialist_main import KEYS

    return Messaging(RedisTransport.from_url(redis_url), KEYS)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--graph", required=True, choices=sorted(GRAPHS))
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--marker-dir", required=True)
    parser.add_argument("--worker-id")
    parser.add_argument("--calls", choices=["session", "unary"], default="session")
    parser.add_argument("--redis", default="", help="Redis for A2A messaging (graphs that invoke specialists)")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
