"""The quick-start demo: an embedded dev server, a worker and a client, all real processes.

Starts `cmo-server start-dev` on a fresh SQLite file, a worker for the triage graph, runs a few
tickets through it and prints each run's step table. Everything stops at the end.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import cmo

sys.path.insert(0, str(Path(__file__).parent))
from triage import Ticket, triage

TICKETS = ["My invoice is wrong", "The app crashes on start", "How do I change my password?"]


def start_server(db: Path) -> tuple[subprocess.Popen[str], str]:
    server = subprocess.Popen(
        ["cmo-server", "start-dev", "--db", str(db), "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    line = server.stdout.readline()
    if "listening on" not in line:
        server.kill()
        sys.exit(f"the server did not start: {line!r}")
    return server, line.rsplit(" ", 1)[1].strip()


async def run_tickets(address: str) -> None:
    async with await cmo.Client.connect(address) as client:
        handles = [await client.start(triage, Ticket(text)) for text in TICKETS]
        for handle in handles:
            ticket = await handle.result(timeout=30)
            print(f"\n{ticket.text!r} -> {ticket.label}: {ticket.reply}")
            show = ["cmoctl", "--address", address, "runs", "show", handle.run_id]
            await asyncio.to_thread(subprocess.run, show, check=True)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="cmo-demo-") as tmp:
        server, address = start_server(Path(tmp) / "dev.db")
        print(f"dev server on {address} (SQLite file in {tmp})")
        worker = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("triage.py")), "--address", address, "worker"],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            asyncio.run(run_tickets(address))
            subprocess.run(["cmoctl", "--address", address, "runs", "list"], check=True)
        finally:
            worker.terminate()
            worker.wait(timeout=30)
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
