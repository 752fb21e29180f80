"""A2A benchmarks: the receive pipeline's cost, a request-reply round trip, a consumer's throughput.

    uv run python bench/a2a.py [--transport redis|nats|all] [--quick]

- `pipeline`: what one envelope costs a receiver before its handler (parse and validate, verify
  the HMAC signature, the timestamp window and the seen-set), in this process, no transport.
- `round_trip`: an orchestrator publishes a signed SpecialistInvocationRequest, a Specialist
  (another task of this process, on its own connection) runs the receive pipeline and answers,
  the orchestrator receives and parses the reply: p50/p95, one request at a time.
- `graph_step`: a one-step graph whose step invokes the specialist (`ctx.invoke_specialist`),
  start to result through a real cmo-server (in this process, SQLite) that consumes the reply and
  signals the run, a worker and the Specialist (Redis only): p50/p95, one run at a time.
- `throughput`: one consumer running the receive pipeline (signature, window, seen-set) over
  envelopes published beforehand, acking each, 32 deliveries handled at once: envelopes/s.

Redis and NATS are $CMO_TEST_REDIS_URL / $CMO_TEST_NATS_URL or throwaway servers (as the tests
start them: NATS with fsync before every ack). One JSON line per measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cmo.a2a import (  # noqa: E402
    AgentId,
    Budget,
    Cost,
    Envelope,
    HmacKeys,
    SpecialistInvocationRequest,
    SpecialistResult,
    Topic,
)
from cmo.a2a.agents import Specialist  # noqa: E402
from cmo.a2a.pipeline import Inbound, Outbound  # noqa: E402
from cmo.a2a.replay import ReplayGuard  # noqa: E402
from cmo.a2a.transports import Transport  # noqa: E402

ORCHESTRATOR = AgentId("orchestrator", "bench", "1.0")
HEALER = AgentId("specialist", "healer", "1.0")
KEYS = HmacKeys({"k1": b"bench-a2a-key-0123456789abcdefghij"}, current="k1")
REPLIES = str(Topic.replies("acme", "web", "bench"))
INVOKE = Topic.specialist_invoke("acme", "web", "healer")
CONCURRENCY = 32
"""Deliveries the throughput consumer handles at once (`Inbound.serve(concurrency=...)`)."""


def invocation(n: int) -> Envelope:
    payload = SpecialistInvocationRequest(
        "heal", {"selector": f"#s{n}", "page": "/checkout"}, Budget(5, 0.5), "2026-12-31T00:00:00Z"
    )
    return Envelope.build(payload, sender=ORCHESTRATOR, to=HEALER, tenant="acme", project="web", reply_to=REPLIES)


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p95_ms": round(ordered[int(len(ordered) * 0.95) - 1] * 1000, 3),
        "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 3),
    }


async def pipeline_cost(n: int) -> dict[str, Any]:
    """Per envelope: parse and validate, verify, window and seen-set (what `Inbound.accept` does)."""
    inbound = Inbound(me=HEALER, tenant="acme", project="web", keys=KEYS, replay=ReplayGuard())
    wire = [KEYS.sign(invocation(i)).to_bytes() for i in range(n)]

    class Arrived:
        def __init__(self, data: bytes) -> None:
            self.data, self.topic, self.deliveries, self.message_id = data, str(INVOKE), 1, ""

    times = []
    for data in wire:
        started = time.perf_counter()
        await inbound.accept(Arrived(data))  # type: ignore[arg-type]
        times.append(time.perf_counter() - started)
    return {"measurement": "pipeline", "n": n, "envelope_bytes": len(wire[0]), **_us(times)}


def _us(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_us": round(statistics.median(ordered) * 1e6, 1),
        "p95_us": round(ordered[int(len(ordered) * 0.95) - 1] * 1e6, 1),
    }


async def round_trip(name: str, make: Any, n: int) -> dict[str, Any]:
    """One request at a time through a Specialist on its own connection; publish to reply parsed."""
    async with make() as orchestrator_side, make() as specialist_side:

        async def heal(request: SpecialistInvocationRequest, envelope: Envelope) -> SpecialistResult:
            return SpecialistResult("succeeded", 0.9, Cost(0.001), proposal={"selector": request.inputs["selector"]})

        specialist = Specialist(
            HEALER, tenant="acme", project="web", transport=specialist_side, handler=heal, keys=KEYS
        )
        serving = asyncio.create_task(specialist.run())
        replies = await orchestrator_side.subscribe(REPLIES, group="bench", consumer="o1")
        await asyncio.sleep(0.5)
        outbound = Outbound(orchestrator_side, keys=KEYS)
        iterator = replies.__aiter__()
        times = []
        for i in range(n + 20):
            started = time.perf_counter()
            await outbound.send(invocation(i), INVOKE)
            delivery = await anext(iterator)
            Envelope.parse(delivery.data)
            await delivery.ack()
            if i >= 20:
                times.append(time.perf_counter() - started)
        specialist.stop()
        await serving
        await replies.close()
    return {"measurement": "round_trip", "transport": name, "n": n, **percentiles(times)}


async def graph_step(redis_url: str, n: int) -> dict[str, Any]:
    """Start to result of a run whose one step invokes a specialist, through a real server."""
    import tempfile

    import cmo
    from cmo.a2a.invoke import Messaging
    from cmo.a2a.transports.redis import RedisTransport
    from cmo_server.app import CmoServer
    from cmo_server.config import MessagingConfig, ServerConfig, StoreConfig

    secret = KEYS._keys["k1"]
    prefix = f"b{uuid.uuid4().hex[:8]}"
    graph: cmo.Graph[dict[str, Any]] = cmo.Graph(f"bench-invoke-{prefix}")

    @graph.node(entry=True)
    async def ask(state: dict[str, Any], ctx: cmo.NodeContext) -> cmo.NodeResult[dict[str, Any]]:
        result = await ctx.invoke_specialist("healer", task="heal", inputs={"selector": state["selector"]})
        return cmo.NodeResult({"proposal": result.proposal})

    async def heal(request: SpecialistInvocationRequest, envelope: Envelope) -> SpecialistResult:
        return SpecialistResult("succeeded", 0.9, Cost(0.001), proposal={"selector": request.inputs["selector"]})

    with tempfile.TemporaryDirectory(prefix="cmo-bench-a2a-") as tmp:
        config = ServerConfig(
            listen="127.0.0.1:0",
            store=StoreConfig(sqlite_path=f"{tmp}/cmo.db"),
            messaging=MessagingConfig(redis_url=redis_url, a2a_keys=(("k1", secret),), a2a_prefix=prefix),
        )
        async with CmoServer.running(config) as server, await cmo.Client.connect(f"127.0.0.1:{server.port}") as client:
            worker_side, specialist_side = RedisTransport.from_url(redis_url), RedisTransport.from_url(redis_url)
            specialist = Specialist(
                HEALER, tenant="default", project="default", transport=specialist_side, handler=heal, keys=KEYS,
                prefix=prefix,
            )  # fmt: skip
            serving_specialist = asyncio.create_task(specialist.run())
            await specialist.ready.wait()
            worker = cmo.Worker(client, [graph], messaging=Messaging(worker_side, KEYS, prefix=prefix))
            serving_worker = asyncio.create_task(worker.run())
            times = []
            for i in range(n + 10):
                started = time.perf_counter()
                await client.execute(graph, {"selector": f"#s{i}"}, timeout=30)
                if i >= 10:
                    times.append(time.perf_counter() - started)
            worker.shutdown()
            await serving_worker
            specialist.stop()
            await serving_specialist
            await worker_side.close()
            await specialist_side.close()
    return {"measurement": "graph_step", "transport": "redis", "n": n, **percentiles(times)}


async def throughput(name: str, make: Any, n: int) -> dict[str, Any]:
    """One consumer running the receive pipeline over `n` envelopes published beforehand."""
    async with make() as transport:
        inbound = Inbound(me=HEALER, tenant="acme", project="web", keys=KEYS, replay=ReplayGuard())
        subscription = await transport.subscribe(str(INVOKE), group="bench", consumer="c1", max_pending=500)
        for i in range(n):
            envelope = KEYS.sign(invocation(i))
            await transport.publish(str(INVOKE), envelope.to_bytes(), message_id=envelope.meta.message_id)
        handled = 0
        done = asyncio.Event()

        async def count(envelope: Envelope) -> None:
            nonlocal handled
            handled += 1
            if handled == n:
                done.set()

        started = time.perf_counter()
        serving = asyncio.create_task(inbound.serve(subscription, count, concurrency=CONCURRENCY))
        await done.wait()
        elapsed = time.perf_counter() - started
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serving
        await subscription.close()
    return {
        "measurement": "throughput",
        "transport": name,
        "n": n,
        "concurrency": CONCURRENCY,
        "envelopes_per_s": round(n / elapsed, 1),
    }


def transports(which: str, stack: contextlib.ExitStack) -> dict[str, Any]:
    """Factories of fresh, isolated transports per kind: an async context manager each."""
    from tests.support.nats import nats_url
    from tests.support.redis import redis_url

    made: dict[str, Any] = {}
    if which in ("redis", "all"):
        from cmo.a2a.transports.redis import RedisTransport

        url = stack.enter_context(redis_url())
        made["redis_url"] = url
        prefix = f"bench-{uuid.uuid4().hex[:8]}:"

        @contextlib.asynccontextmanager
        async def redis() -> AsyncIterator[Transport]:
            opened = RedisTransport.from_url(url, key_prefix=prefix)
            try:
                yield opened
            finally:
                await opened.close()

        made["redis"] = redis
    if which in ("nats", "all"):
        from cmo.a2a.transports.nats import NatsTransport

        nurl = stack.enter_context(nats_url())
        tag = uuid.uuid4().hex[:8]

        @contextlib.asynccontextmanager
        async def nats() -> AsyncIterator[Transport]:
            opened = await NatsTransport.connect(nurl, stream=f"BENCH_{tag}", subject_prefix=f"bench{tag}")
            try:
                yield opened
            finally:
                await opened.close()

        made["nats"] = nats
    return made


async def run(which: str, quick: bool) -> None:
    n = 200 if quick else 2000
    print(json.dumps(await pipeline_cost(n)), flush=True)
    with contextlib.ExitStack() as stack:
        made = transports(which, stack)
        url = made.pop("redis_url", None)
        for name, make in made.items():
            print(json.dumps(await round_trip(name, make, 100 if quick else 1000)), flush=True)
            print(json.dumps(await throughput(name, make, 1000 if quick else 10000)), flush=True)
        if url is not None:
            print(json.dumps(await graph_step(url, 30 if quick else 300)), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transport", choices=["redis", "nats", "all"], default="all")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    asyncio.run(run(args.transport, args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
