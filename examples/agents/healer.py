"""The healer: a specialist agent that proposes a new selector for a test that lost its element.

    REDIS_URL=redis://127.0.0.1:6379/0 CMO_A2A_KEYS=k1=<secret of 32+ bytes> python examples/agents/healer.py

It takes SpecialistInvocationRequests from `qa.default.default.specialists.healer.invoke` (its
instances share them, one consumer group), verifies each (signature, timestamp, replays), and
answers a signed SpecialistResult to the request's `reply_to`.
"""

from __future__ import annotations

import asyncio
import os
import signal

from cmo.a2a import AgentId, Cost, Envelope, ErrorInfo, HmacKeys, SpecialistInvocationRequest, SpecialistResult
from cmo.a2a.agents import Specialist
from cmo.a2a.transports.redis import RedisTransport

HEALER = AgentId("specialist", "healer", "1.0")


def keys_from_env() -> HmacKeys:
    """CMO_A2A_KEYS=kid=secret[,kid=secret]: the first signs, as the server reads it."""
    pairs = [item.split("=", 1) for item in os.environ["CMO_A2A_KEYS"].split(",") if item.strip()]
    return HmacKeys({kid.strip(): secret.encode() for kid, secret in pairs}, current=pairs[0][0].strip())


async def heal(request: SpecialistInvocationRequest, envelope: Envelope) -> SpecialistResult:
    """Propose a sturdier selector: a data-test attribute instead of a brittle id or class."""
    selector = str(request.inputs.get("selector", ""))
    if not selector:
        return SpecialistResult("rejected", 0.0, Cost(0.0), errors=[ErrorInfo("no_selector", "nothing to heal")])
    name = selector.lstrip("#.").split()[0] or "target"
    proposal = {"selector": f"[data-test='{name}']", "was": selector}
    confidence = 0.92 if selector.startswith("#") else 0.55
    return SpecialistResult("succeeded", confidence, Cost(usd=0.002, minutes=0.01), proposal=proposal)


async def main() -> None:
    transport = RedisTransport.from_url(os.environ["REDIS_URL"])
    healer = Specialist(
        HEALER, tenant="default", project="default", transport=transport, handler=heal, keys=keys_from_env()
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, healer.stop)
    serving = asyncio.create_task(healer.run())
    await healer.ready.wait()
    print(f"healer serving {healer.topic}", flush=True)
    try:
        await serving
    finally:
        await transport.close()


if __name__ == "__main__":
    asyncio.run(main())
