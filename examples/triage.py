"""A support-ticket triage graph: classify, then draft a reply or escalate, then finish.

Run a worker for it:  python examples/triage.py worker [--address 127.0.0.1:7233]
Start a run:          python examples/triage.py start "My invoice is wrong"
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from dataclasses import dataclass, field, replace
from datetime import timedelta

import cmo


@dataclass
class Ticket:
    """The state: a ticket and what the graph learned about it."""

    text: str
    label: str = ""
    priority: int = 0
    reply: str = ""
    log: list[str] = field(default_factory=list)


triage: cmo.Graph[Ticket] = cmo.Graph("triage", version=1, state=Ticket)

KEYWORDS = {
    "invoice": "billing",
    "refund": "billing",
    "crash": "bug",
    "crashes": "bug",
    "error": "bug",
    "password": "account",
}


@cmo.activity(name="classify_text", timeout=timedelta(seconds=10))
async def classify_text(text: str) -> str:
    """Stands in for a model call: a side effect, so it is recorded once and replayed after."""
    words = text.lower().replace("?", " ").replace(".", " ").split()
    return next((KEYWORDS[w] for w in words if w in KEYWORDS), "general")


@triage.node(entry=True, edges={"reply": "draft_reply", "escalate": "escalate"}, retry=cmo.RetryPolicy(max_attempts=5))
async def classify(ticket: Ticket, ctx: cmo.NodeContext) -> cmo.NodeResult[Ticket]:
    label = await ctx.activity(classify_text, ticket.text)
    priority = 2 if label == "bug" else 1
    ticket = replace(ticket, label=label, priority=priority, log=[*ticket.log, f"classified as {label}"])
    return cmo.NodeResult(ticket, next="escalate" if priority > 1 else "reply", output={"label": label})


@triage.node(edges={"done": "close"})
async def draft_reply(ticket: Ticket, ctx: cmo.NodeContext) -> cmo.NodeResult[Ticket]:
    # ctx.now() is the step's logical time: the same on every retry, so the state hash is stable.
    reply = f"[{ctx.now():%Y-%m-%d}] Thanks! Your {ticket.label} request is with our team."
    return cmo.NodeResult(replace(ticket, reply=reply, log=[*ticket.log, "reply drafted"]), next="done")


@triage.node(edges={"done": "close"})
async def escalate(ticket: Ticket, ctx: cmo.NodeContext) -> cmo.NodeResult[Ticket]:
    engineer = ctx.rng.choice(["ada", "grace", "linus"])  # deterministic per run and step
    return cmo.NodeResult(
        replace(ticket, reply=f"Escalated to {engineer}.", log=[*ticket.log, "escalated"]), next="done"
    )


@triage.node
async def close(ticket: Ticket, ctx: cmo.NodeContext) -> cmo.NodeResult[Ticket]:
    return cmo.NodeResult(replace(ticket, log=[*ticket.log, "closed"]), next=cmo.END)


async def run_worker(address: str, concurrency: int) -> None:
    # wait_ready=None: a worker started before its server waits for it (and logs that it waits).
    async with await cmo.Client.connect(address, wait_ready=None) as client:
        worker = cmo.Worker(client, [triage], concurrency=concurrency)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, worker.shutdown)  # drains; a second Ctrl-C stops it at once
        await worker.run()


async def start_run(address: str, text: str) -> None:
    async with await cmo.Client.connect(address) as client:
        handle = await client.start(triage, Ticket(text))
        print(await handle.result(timeout=60))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--address", default="127.0.0.1:7233")
    sub = parser.add_subparsers(dest="command", required=True)
    worker = sub.add_parser("worker")
    worker.add_argument("--concurrency", type=int, default=10)
    start = sub.add_parser("start")
    start.add_argument("text")
    args = parser.parse_args()
    if args.command == "worker":
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        asyncio.run(run_worker(args.address, args.concurrency))
    else:
        asyncio.run(start_run(args.address, args.text))


if __name__ == "__main__":
    main()
