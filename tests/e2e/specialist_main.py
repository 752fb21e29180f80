"""A specialist process for the end-to-end tests: the healer, on Redis Streams.

    python -m tests.e2e.specialist_main --redis URL --key-prefix P --marker-dir DIR [--hold]

Prints `ready <consumer>` once subscribed. Its handler leaves a marker when it starts and one when
it has made its effect; with --hold it waits (to be killed) after starting.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path

from cmo.a2a import AgentId, Cost, Envelope, HmacKeys, SpecialistInvocationRequest, SpecialistResult
from cmo.a2a.agents import Specialist
from cmo.a2a.transports.redis import RedisTransport

HEALER = AgentId("specialist", "healer", "1.0")
KEYS = HmacKeys({"k1": b"e2e-specialist-key-0123456789abcdef"}, current="k1")


async def serve(args: argparse.Namespace) -> None:
    markers = Path(args.marker_dir)
    me = f"healer-{os.getpid()}"

    async def heal(request: SpecialistInvocationRequest, envelope: Envelope) -> SpecialistResult:
        mark = {"consumer": me, "message_id": envelope.meta.message_id}
        (markers / f"{me}.started").write_text(json.dumps(mark))
        if args.hold:
            await asyncio.sleep(3600)
        (markers / f"{me}.effect").write_text(json.dumps(mark))
        return SpecialistResult("succeeded", 0.9, Cost(0.01), proposal={"by": me})

    transport = RedisTransport.from_url(args.redis, key_prefix=args.key_prefix)
    specialist = Specialist(
        HEALER, tenant="acme", project="web", transport=transport, handler=heal, keys=KEYS, consumer=me, ack_wait=1.0
    )
    running = asyncio.create_task(specialist.run())
    await asyncio.sleep(0.3)  # subscribed
    print(f"ready {me}", flush=True)
    await running


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis", required=True)
    parser.add_argument("--key-prefix", required=True)
    parser.add_argument("--marker-dir", required=True)
    parser.add_argument("--hold", action="store_true")
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
