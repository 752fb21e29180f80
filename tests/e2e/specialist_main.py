"""A specialist process for the end-to-end tests: the healer, on Redis Streams.

    python -m tests.e2e.specialist_main --redis URL --key-prefix P --marker-dir DIR [--hold]
        [--hold-until FILE] [--tenant T --project P] [--registry ADDRESS --instance ID --lease S]

Prints `ready <consumer>` once subscribed (and, with --registry, registered with the capability
healing.selector, beating at a third of its lease). Its handler leaves a marker when it starts and one when
it has made its effect; with --hold it waits (to be killed) after starting, with --hold-until
until FILE exists.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from datetime import timedelta
from pathlib import Path

import cmo
from cmo.a2a import AgentId, Cost, Envelope, HmacKeys, SpecialistInvocationRequest, SpecialistResult
from cmo.a2a.agents import Specialist
from cmo.a2a.transports.redis import RedisTransport

HEALER = AgentId("specialist", "healer", "1.0")
KEY_ID, SECRET = "k1", b"e2e-specialist-key-0123456789abcdef"
KEYS = HmacKeys({KEY_ID: SECRET}, current=KEY_ID)
"""The key every e2e agent, worker and server signs and verifies with."""


async def _until_exists(path: Path) -> None:
    """Wait until the test creates `path` (a file on disk is the only signal across processes here)."""
    for _ in range(36000):
        if await asyncio.to_thread(path.exists):
            return
        await asyncio.sleep(0.05)


async def serve(args: argparse.Namespace) -> None:
    markers = Path(args.marker_dir)
    me = f"healer-{os.getpid()}"

    async def heal(request: SpecialistInvocationRequest, envelope: Envelope) -> SpecialistResult:
        mark = {"consumer": me, "message_id": envelope.meta.message_id}
        (markers / f"{me}.started").write_text(json.dumps(mark))
        if args.hold:
            await asyncio.sleep(3600)
        if args.hold_until:
            await _until_exists(Path(args.hold_until))
        (markers / f"{me}.effect").write_text(json.dumps(mark))
        return SpecialistResult("succeeded", 0.9, Cost(0.01), proposal={"by": me})

    transport = RedisTransport.from_url(args.redis, key_prefix=args.key_prefix)
    registry = None
    if args.registry:
        client = await cmo.Client.connect(args.registry, tenant=args.tenant, project=args.project)
        registry = client.registry
    specialist = Specialist(
        HEALER,
        tenant=args.tenant,
        project=args.project,
        transport=transport,
        handler=heal,
        keys=KEYS,
        consumer=me,
        ack_wait=1.0,
        registry=registry,
        instance=args.instance or None,
        lease=timedelta(seconds=args.lease),
        provides=["healing.selector"],
    )
    running = asyncio.create_task(specialist.run())
    await asyncio.wait([running, asyncio.create_task(specialist.ready.wait())], return_when=asyncio.FIRST_COMPLETED)
    print(f"ready {me}", flush=True)
    await running


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis", required=True)
    parser.add_argument("--key-prefix", default="cmo:a2a:")
    parser.add_argument("--marker-dir", required=True)
    parser.add_argument("--hold", action="store_true")
    parser.add_argument("--hold-until", default="")
    parser.add_argument("--tenant", default="acme")
    parser.add_argument("--project", default="web")
    parser.add_argument("--registry", default="", help="a server whose agent registry to join")
    parser.add_argument("--instance", default="", help="the instance's agent id in the registry")
    parser.add_argument("--lease", type=float, default=60.0, help="its lease in the registry, in seconds")
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
