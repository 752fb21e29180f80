"""How long the web UI takes to open a run with many steps: page load to the step timeline rendered.

    uv run python bench/ui.py [--steps 1000] [--repeat 10]

An in-process `cmo-server` on SQLite with its web UI, a worker that runs one run of `--steps`
steps (each with one recorded activity and a state that changes), then Debian's Chromium
(headless, through Playwright) opens the run's page `--repeat` times, each in a fresh browser
context (no cache). Measured in the page: from the navigation's start to the moment the timeline
of every step is in the document (a `performance.mark` the page sets once it has drawn it); and,
from here, the wall time of `goto` until the last step's row is there; and, the page being loaded
on the runs list, from the click (a hash change) to the last step's row. One JSON line per
measurement on stdout. The target (issue 13): a run of 1,000 steps opens in at most 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from playwright.async_api import async_playwright  # noqa: E402

import cmo  # noqa: E402
from cmo_server.app import CmoServer  # noqa: E402
from cmo_server.config import EngineLimits, ServerConfig, StoreConfig, UIConfig  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
State = dict[str, Any]


@cmo.activity(name="bench.note")
async def note(n: int) -> dict[str, Any]:
    return {"n": n, "text": f"step {n} looked something up"}


def long_graph() -> cmo.Graph[State]:
    graph: cmo.Graph[State] = cmo.Graph("bench-ui-long")

    @graph.node(entry=True, edges={"again": "step", "done": cmo.END})
    async def step(state: State, ctx: cmo.NodeContext) -> cmo.NodeResult[State]:
        n = int(state["n"]) + 1
        found = await ctx.activity(note, n)
        recent = [*state["recent"], found["text"]][-5:]
        return cmo.NodeResult({**state, "n": n, "recent": recent}, next="done" if n >= state["to"] else "again")

    return graph


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": round(statistics.median(ordered), 1),
        "min_ms": round(ordered[0], 1),
        "max_ms": round(ordered[-1], 1),
    }


async def main(steps: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = ServerConfig(
            listen="127.0.0.1:0",
            store=StoreConfig(sqlite_path=str(Path(tmp) / "cmo.db")),
            limits=EngineLimits(sweep_interval=timedelta(milliseconds=100)),
            ui=UIConfig(listen="127.0.0.1:0"),
        )
        async with (
            CmoServer.running(config) as server,
            await cmo.Client.connect(f"127.0.0.1:{server.port}") as client,
        ):
            graph = long_graph()
            worker = cmo.Worker(client, [graph], poll_wait=1.0)
            serving = asyncio.create_task(worker.run())
            started = time.perf_counter()
            handle = await client.start(graph, {"n": 0, "to": steps, "recent": []})
            await handle.result(timeout=600)
            run_seconds = time.perf_counter() - started
            worker.shutdown()
            await serving
            url = f"http://127.0.0.1:{server.ui_port}/#/runs/{handle.run_id}"
            last = f'#step-table tbody tr[data-step="{steps - 1}"]'
            in_page: list[float] = []
            wall: list[float] = []
            from_list: list[float] = []
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                for _ in range(repeat + 1):  # the first warms the server's caches and Chromium up
                    context = await browser.new_context(viewport={"width": 1280, "height": 800})
                    page = await context.new_page()
                    began = time.perf_counter()
                    await page.goto(url)
                    await page.wait_for_selector(last, state="attached", timeout=30_000)
                    wall.append(1000 * (time.perf_counter() - began))
                    marks = await page.evaluate(
                        "performance.getEntriesByName('cmo:steps-rendered').map((m) => m.startTime)"
                    )
                    in_page.append(float(marks[0]))
                    # From the runs list, as a user opens it: the page is loaded, the hash changes.
                    await page.evaluate("location.hash = '#/runs'")
                    await page.wait_for_selector(f'#runs-body tr[data-run="{handle.run_id}"]')
                    began_ms = await page.evaluate("performance.now()")
                    await page.evaluate(f"location.hash = '#/runs/{handle.run_id}'")
                    await page.wait_for_selector(last, state="attached", timeout=30_000)
                    from_list.append(await page.evaluate("performance.now()") - began_ms)
                    await context.close()
                await browser.close()
    in_page, wall, from_list = in_page[1:], wall[1:], from_list[1:]
    common = {"steps": steps, "activities_per_step": 1, "repeat": repeat, "backend": "sqlite"}
    print(json.dumps({"measurement": "open_run_page", **common, "clock": "in page", **summary(in_page)}))
    print(json.dumps({"measurement": "open_run_page", **common, "clock": "wall, from here", **summary(wall)}))
    print(json.dumps({"measurement": "open_from_runs_list", **common, "clock": "in page", **summary(from_list)}))
    print(json.dumps({"measurement": "run_itself", "steps": steps, "seconds": round(run_seconds, 2)}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(main(args.steps, args.repeat))
