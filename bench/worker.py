"""The benchmark worker process: `python -m bench.worker --address HOST:PORT --concurrency N`.

It serves the bench graphs until SIGTERM or SIGINT, then drains and exits. With `--timings`
(set by `run.py --breakdown`) it also times its RPCs, node calls and whole tasks; see timers.py.
`--unary` (set by `run.py --worker-calls unary`) makes its task calls unary RPCs instead of calls
on a worker session.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

import cmo
from bench.graphs import GRAPHS
from bench.timers import install_signal_handlers, time_async, time_methods
from cmo._graph import Node
from cmo._session import WorkerSession
from cmo._worker import Worker as _WorkerImpl


def instrument(client: cmo.Client) -> None:
    stub = client.worker_stub
    for name in ("PollTask", "CompleteTask", "HeartbeatTask", "FailTask"):
        setattr(stub, name, time_async(f"worker-rpc.{name}", getattr(stub, name)))
    time_methods(WorkerSession, "worker-session", ["call"])
    time_methods(Node, "worker", ["run"])
    time_methods(_WorkerImpl, "worker", ["_execute", "_run_node", "_complete"])
    install_signal_handlers()


async def serve(address: str, concurrency: int, *, timings: bool, session: bool) -> None:
    async with await cmo.Client.connect(address, wait_ready=30.0) as client:
        if timings:
            instrument(client)
        worker = cmo.Worker(client, GRAPHS, concurrency=concurrency, shutdown_grace=5.0, session=session)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, worker.shutdown)
        await worker.run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", required=True)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--timings", action="store_true", help="time layers; see bench/timers.py")
    parser.add_argument("--unary", action="store_true", help="unary task calls, not a worker session")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(args.address, args.concurrency, timings=args.timings, session=not args.unary))


if __name__ == "__main__":
    main()
