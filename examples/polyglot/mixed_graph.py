"""A graph written in Python with one node run by the Node.js worker (examples/polyglot/node).

    prepare (Python) -> enrich (Node.js, task queue "node-js") -> finish (Python)

This worker registers the whole graph but polls only the Python queue, so `enrich` goes to the
Node.js worker, which polls "node-js". The state crosses between the languages as canonical JSON.

And with agents in both languages (`--redis URL --keys kid=secret`, the server's REDIS_URL and
CMO_A2A_KEYS):

    prepare (Python) -> enrich (Node.js worker) -> review (Python, asks whichever agent can do
    "text.review": the Node.js specialist, src/specialist.js, found in the registry)

Run its Python worker:  python examples/polyglot/mixed_graph.py [--address 127.0.0.1:7233]
[--redis URL --keys kid=secret] (it prints `ready <worker_id>` once it serves). Start runs with
the Node.js example's `node src/start_run.js polyglot-mixed '{"text": "..."}'` (or
`polyglot-agents`).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from datetime import timedelta
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


agents: cmo.Graph[State] = cmo.Graph("polyglot-agents", version=1, task_queue=PYTHON_QUEUE)
agents.node(entry=True, edges={"enrich": "enrich"})(prepare)
agents.node(edges={"review": "review"}, task_queue=NODE_QUEUE)(enrich)


@agents.node
async def review(state: State, ctx: cmo.NodeContext) -> cmo.NodeResult[State]:
    # Whichever HEALTHY agent can do it answers: the registry finds it, in any language.
    answer = await ctx.invoke_specialist(
        capability="text.review", task="review", inputs={"text": state["text"]}, timeout=timedelta(seconds=60)
    )
    return cmo.NodeResult({**state, "review": answer.proposal, "review_status": answer.status}, next=cmo.END)


async def run_worker(address: str, worker_id: str | None, redis_url: str, keys: str) -> None:
    async with await cmo.Client.connect(address, wait_ready=None) as client:  # waits for a server not up yet
        graphs, messaging = [mixed], None
        if redis_url:
            from cmo.a2a import HmacKeys
            from cmo.a2a.invoke import Messaging
            from cmo.a2a.transports.redis import RedisTransport

            kid, _, secret = keys.partition("=")
            messaging = Messaging(RedisTransport.from_url(redis_url), HmacKeys({kid: secret.encode()}, current=kid))
            graphs.append(agents)
        worker = cmo.Worker(client, graphs, task_queues=[PYTHON_QUEUE], worker_id=worker_id, messaging=messaging)
        for graph in graphs:  # before `ready`: runs may be started from then on
            await client.register_graph(graph)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, worker.shutdown)
        print(f"ready {worker.worker_id}", flush=True)
        await worker.run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--address", default="127.0.0.1:7233")
    parser.add_argument("--worker-id")
    parser.add_argument("--redis", default="", help="Redis for A2A: also serve polyglot-agents")
    parser.add_argument("--keys", default="", help="kid=secret: the A2A signing key")
    args = parser.parse_args()
    asyncio.run(run_worker(args.address, args.worker_id, args.redis, args.keys))


if __name__ == "__main__":
    main()
