"""Screenshots of the web UI for the README: the triage example's runs, one of them waiting.

Runs an in-process server on a temporary SQLite file with its UI, a worker for the triage graph
and a few tickets (one of them held at a signal), then has Debian's Chromium (headless, through
Playwright) photograph the runs list and a run at 1280x800 into docs/images/.

    uv run python scripts/ui_screenshots.py
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

from playwright.async_api import async_playwright

import cmo
from cmo_server.app import CmoServer
from cmo_server.config import ServerConfig, StoreConfig, UIConfig

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
from triage import Ticket, triage  # noqa: E402

OUT = ROOT / "docs" / "images"
TICKETS = ["My invoice is wrong", "The app crashes on start", "How do I change my password?"]


def approval() -> cmo.Graph[dict[str, Any]]:
    graph: cmo.Graph[dict[str, Any]] = cmo.Graph("refund")

    @graph.node(entry=True, edges={"ask": "approve"})
    async def assess(state: dict[str, Any], ctx: cmo.NodeContext) -> Any:
        return cmo.NodeResult({**state, "amount": 120, "risk": "low"}, next="ask")

    @graph.node(edges={"pay": "pay"})
    async def approve(state: dict[str, Any], ctx: cmo.NodeContext) -> Any:
        decision = await ctx.wait_for_signal("approve", timeout=timedelta(hours=24))
        return cmo.NodeResult({**state, "approved_by": decision["by"]}, next="pay")

    @graph.node
    async def pay(state: dict[str, Any], ctx: cmo.NodeContext) -> Any:
        return cmo.NodeResult({**state, "paid": True}, next=cmo.END)

    return graph


async def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        config = ServerConfig(
            listen="127.0.0.1:0",
            store=StoreConfig(sqlite_path=str(Path(scratch) / "cmo.db")),
            ui=UIConfig(listen="127.0.0.1:0"),
        )
        refund = approval()
        async with CmoServer.running(config) as server, await cmo.Client.connect(f"127.0.0.1:{server.port}") as client:
            worker = cmo.Worker(client, [triage, refund])
            serving = asyncio.create_task(worker.run())
            for text in TICKETS:
                await (await client.start(triage, Ticket(text))).result(timeout=30)
            waiting = await client.start(refund, {"order": "A-1042"})
            for _ in range(100):  # the worker reaches the signal in a few steps' time
                if (await waiting.describe()).status is cmo.RunStatus.WAITING:
                    break
                await asyncio.sleep(0.1)
            base = f"http://127.0.0.1:{server.ui_port}/"
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
                page = await browser.new_page(viewport={"width": 1280, "height": 800})
                await page.goto(base + "#/runs")
                await page.wait_for_selector("table tbody tr")
                await page.screenshot(path=str(OUT / "ui-runs.png"))
                await page.goto(base + f"#/runs/{waiting.run_id}")
                await page.wait_for_selector("svg")
                await page.wait_for_timeout(300)
                await page.screenshot(path=str(OUT / "ui-run.png"))
                await browser.close()
            worker.shutdown()
            await serving
    print(f"wrote {OUT / 'ui-runs.png'} and {OUT / 'ui-run.png'}")


if __name__ == "__main__":
    asyncio.run(main())
