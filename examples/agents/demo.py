"""The agents demo, end to end: `make demo-agents`.

Starts a Redis (or uses $REDIS_URL), a dev server that consumes agents' replies, the healer
specialist as its own process, and a worker for the orchestrator graph; runs two failing tests
through the graph and prints each decision as the DecisionNotice on the wire says it.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cmo
from cmo.a2a import Envelope, HmacKeys
from cmo.a2a.transports.redis import RedisTransport

sys.path.insert(0, str(Path(__file__).parent))
from orchestrator import Failure, decisions_topic, describe, healing, messaging

FAILURES = [
    Failure("checkout.spec.ts", "NoSuchElementError: no such element: '#buy-now'"),
    Failure("login.spec.ts", "AssertionError: expected 200, got 500"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis(tmp: Path) -> tuple[subprocess.Popen[bytes] | None, str]:
    if url := os.environ.get("REDIS_URL"):
        return None, url
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("no redis-server here: install it, or set REDIS_URL to a Redis")
    port = free_port()
    redis = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp)],
        stdout=subprocess.DEVNULL,
    )
    for _ in range(200):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return redis, f"redis://127.0.0.1:{port}/0"
        time.sleep(0.02)
    sys.exit("redis-server did not start")


def start_server(db: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    server = subprocess.Popen(
        ["cmo-server", "start-dev", "--db", str(db), "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert server.stdout is not None
    line = server.stdout.readline()
    if "listening on" not in line:
        server.kill()
        sys.exit(f"the server did not start: {line!r}")
    return server, line.rsplit(" ", 1)[1].strip()


async def run_failures(address: str, redis_url: str, keys: HmacKeys) -> None:
    transport = RedisTransport.from_url(redis_url)
    decisions = await transport.subscribe(decisions_topic(), group="demo", consumer="demo")
    async with await cmo.Client.connect(address) as client:
        worker = cmo.Worker(client, [healing], messaging=messaging(transport, keys))
        serving = asyncio.create_task(worker.run())
        try:
            for failure in FAILURES:
                result = await client.execute(healing, failure, timeout=60)
                async for delivery in decisions:
                    notice = Envelope.parse(delivery.data)
                    await delivery.ack()
                    if notice.meta.message_id == result.notice_id:
                        break
                keys.verify(notice)
                print(f"{failure.test}: {failure.message}\n  -> {describe(notice)}")
        finally:
            worker.shutdown()
            await serving
            await decisions.close()
            await transport.close()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="cmo-agents-") as tmp:
        keys_text = f"demo={secrets.token_urlsafe(32)}"
        redis, redis_url = start_redis(Path(tmp))
        env = {**os.environ, "REDIS_URL": redis_url, "CMO_A2A_KEYS": keys_text, "PYTHONUNBUFFERED": "1"}
        server, address = start_server(Path(tmp) / "dev.db", env)
        healer = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("healer.py"))], env=env, stdout=subprocess.PIPE, text=True
        )
        assert healer.stdout is not None
        print(healer.stdout.readline().strip())  # "healer serving …": subscribed, nothing it is sent is missed
        keys = HmacKeys({"demo": keys_text.split("=", 1)[1].encode()}, current="demo")
        try:
            print(f"dev server on {address}, Redis at {redis_url}")
            asyncio.run(run_failures(address, redis_url, keys))
        finally:
            for process in (healer, server, redis):
                if process is not None:
                    process.terminate()
                    process.wait(timeout=30)


if __name__ == "__main__":
    main()
