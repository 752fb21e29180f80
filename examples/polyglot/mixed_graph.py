"""A graph written in Python with one node run by the Node.js worker (examples/polyglot/node).

    prepare (Python) -> enrich (Node.js, task queue "node-js") -> finish (Python)

This worker registers the whole graph but polls only the Python queue, so `enrich` goes to the
Node.js worker, which polls "node-js". The state crosses between the languages as canonical JSON.

Run its Python worker:  python examples/polyglot/mixed_graph.py [--address 127.0.0.1:7233]
(it prints `ready <worker_id>` once it serves). Start runs with the Node.js example's
`node src/start_run.js polyglot-mixed '{"text": "..."}'`.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import Any

import cmo

PYTHON_QUEUE = "polyglot-py"
NODE_QUEUE = "node-js"
LINGER_TICK = 0.05

State = dict[str, Any]

mixed: cmo.Graph[State] = cmo.Graph("polyglot-mixed", version=1, task_queue=PYTHON_QUEUE)


@mixed.node(entry=True, edges={"enrich": "enrich"})
async def prepare(state: State, ctx: cmo.NodeContext) -> cmo.NodeResult[State]:
    words = state["text"].lower().split()
    # Stands in for slow work (`linger_seconds` in the input) that stops early when the run is
    # cancelled: the step still checkpoints, and the next one, in Node.js, is never started.
    for _ in range(round(float(state.get("linger_seconds", 0)) / LINGER_TICK)):
        if ctx.cancel_requested:
            break
        await asyncio.sleep(LINGER_TICK)
    return cmo.NodeResult({**state, "words": words}, next="enrich")


@mixed.node(edges={"finish": "finish"}, task_queue=NODE_QUEUE)
async def enrich(state: State, ctx: cmo.NodeContext) -> cmo.NodeResult[State]:
    # Declared here so that the graph is complete; its code is the Node.js worker's.
    raise cmo.errors.ApplicationError("enrich runs in the Node.js worker", non_retryable=True)


@mixed.node
async def finish(state: State, ctx: cmo.NodeContext) -> cmo.NodeResult[State]:
    counts: dict[str, int] = state["counts"]
    summary = f"{len(state['words'])} words, {len(counts)} distinct (counted by {state['enriched_by']})"
    return cmo.NodeResult({**state, "summary": summary}, next=cmo.END)


async def run_worker(address: str, worker_id: str | None) -> None:
    async with await cmo.Client.connect(address, wait_ready=30) as client:
        worker = cmo.Worker(client, [mixed], task_queues=[PYTHON_QUEUE], worker_id=worker_id)
        await client.register_graph(mixed)  # before `ready`: runs may be started from then on
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, worker.shutdown)
        print(f"ready {worker.worker_id}", flush=True)
        await worker.run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--address", default="127.0.0.1:7233")
    parser.add_argument("--worker-id")
    args = parser.parse_args()
    asyncio.run(run_worker(args.address, args.worker_id))


if __name__ == "__main__":
    main()
