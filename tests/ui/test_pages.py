"""Every page of the web UI renders what the server knows, in a real Chromium: the runs list (filters,
search, paging, live refresh), a run (graph with the path taken, step timeline, state and diff,
activities, waits, failure, what it waits for), graphs, queues, agents, namespaces; user data
shown as text; usable by keyboard and at phone width."""

from __future__ import annotations

import asyncio
import re
import urllib.parse
from typing import Any

import pytest
from playwright.async_api import Page, expect

import cmo
from tests.support.waiting import assert_eventually
from tests.ui.conftest import Served


async def waiting_run(served: Served, state: dict[str, Any] | None = None, run_id: str | None = None) -> str:
    """A run of the approval graph that waits for its signal at step 1."""
    handle = await served.client.start(served.approval, state or {"ticket": "t-1"}, run_id=run_id)

    async def waits() -> cmo.RunInfo:
        info = await served.client.get_run(handle.run_id)
        assert info.status is cmo.RunStatus.WAITING, info
        return info

    await assert_eventually(waits, timeout=15)
    return handle.run_id


async def test_the_runs_list_filters_searches_pages_and_refreshes(served: Served, page: Page):
    done = [await served.client.execute(served.counting, {"to": 2}, timeout=20) for _ in range(3)]
    assert all(d == {"to": 2, "n": 2} for d in done)
    waiting = await waiting_run(served, run_id="order-waiting-1")
    await page.goto(served.url)
    rows = page.locator("#runs-body tr")
    await expect(rows).to_have_count(4)
    await expect(page.locator(f'#runs-body tr[data-run="{waiting}"]')).to_contain_text("WAITING")
    # What it waits for, in the list.
    await expect(page.locator(f'#runs-body tr[data-run="{waiting}"]')).to_contain_text(
        "waits for the signal 'approval'"
    )
    # Filter by status.
    await page.select_option("#f-status", "COMPLETED")
    await page.click("#run-filters button[type=submit]")
    await expect(rows).to_have_count(3)
    await expect(page.locator("#runs-body")).not_to_contain_text("WAITING")
    # Search by id prefix, with the other filters cleared.
    await page.click("text=Clear")
    await page.fill("#f-q", "order-wait")
    await page.keyboard.press("Enter")
    await expect(rows).to_have_count(1)
    await expect(page.locator("#runs-info")).to_contain_text("ids starting with order-wait, in id order")
    # Filter by graph.
    await page.click("text=Clear")
    await page.fill("#f-graph", served.counting.graph_id)
    await page.keyboard.press("Enter")
    await expect(rows).to_have_count(3)
    # A new run shows up by itself (the list refreshes every few seconds).
    await page.click("text=Clear")
    await expect(rows).to_have_count(4)
    await served.client.execute(served.counting, {"to": 1}, timeout=20)
    await expect(rows).to_have_count(5, timeout=15_000)


async def test_the_runs_list_pages_with_the_engines_tokens(served: Served, page: Page):
    for i in range(55):
        await served.client.start(served.counting, {"to": 1, "i": i})
    await page.goto(served.url)
    rows = page.locator("#runs-body tr")
    await expect(rows).to_have_count(50)
    first_page = await page.locator("#runs-body tr").first.get_attribute("data-run")
    await page.click("#next-page")
    await expect(rows).to_have_count(5)
    await expect(page.locator("#next-page")).to_be_disabled()
    await page.click("#prev-page")
    await expect(rows).to_have_count(50)
    assert await page.locator("#runs-body tr").first.get_attribute("data-run") == first_page


async def test_a_run_page_shows_its_graph_steps_states_diffs_activities_and_what_it_waits_for(
    served: Served, page: Page
):
    run_id = await waiting_run(served)
    await page.goto(f"{served.url}/#/runs/{run_id}")
    await expect(page.locator("#run-id")).to_have_text(run_id)
    await expect(page.locator("#run-head")).to_contain_text("WAITING")
    await expect(page.locator("#progress-summary")).to_have_text(
        "step 1 (approve) waits for the signal 'approval', with no time-out"
    )
    # The graph: plan visited, approve current, the edge plan -> approve taken.
    await expect(page.locator('svg.graph g[data-node="plan"]')).to_have_class("node visited")
    await expect(page.locator('svg.graph g[data-node="approve"]')).to_have_class("node current")
    await expect(page.locator('svg.graph g[data-node="finish"]')).to_have_class("node")
    await expect(page.locator('svg.graph g[data-edge="plan>approve"]')).to_have_class("edge taken")
    # The step timeline: step 0 (plan), with its duration.
    steps = page.locator("#step-table tbody tr[data-step]")
    await expect(steps).to_have_count(1)
    await expect(steps.first).to_contain_text("plan")
    await expect(steps.first).to_contain_text("ask → approve")
    await expect(steps.first.locator("td").nth(4)).to_have_text(re.compile(r"^\d+(\.\d+)? (ms|s)$"))
    # Its details: the state, its diff against the input, the activity's response.
    toggle = steps.first.get_by_role("button", name="Details")
    await toggle.focus()
    await page.keyboard.press("Enter")
    detail = page.locator("#step-0-detail")
    await expect(detail).to_contain_text('"planned": true')
    await expect(detail).to_contain_text("+ $.planned: true")
    await expect(detail).to_contain_text("+ $.lookup:")
    await expect(detail).to_contain_text("lookup")
    await expect(detail).to_contain_text('"customer": "ACME"')
    await expect(page.locator("#waits-list")).to_contain_text("step 1 waits for the signal approval")


async def test_a_failed_run_shows_its_failure(served: Served, page: Page):
    run_id = await waiting_run(served)
    await served.client.cancel(run_id, reason="no longer needed")

    async def ended() -> cmo.RunInfo:
        info = await served.client.get_run(run_id)
        assert info.status is cmo.RunStatus.CANCELLED
        return info

    await assert_eventually(ended, timeout=15)
    await page.goto(f"{served.url}/#/runs/{run_id}")
    await expect(page.locator("#failure-message")).to_contain_text("no longer needed")
    await expect(page.locator("#progress-summary")).to_have_text("The run ended CANCELLED.")
    await expect(page.locator("#open-signal")).to_be_disabled()


async def test_user_data_is_shown_as_text_never_as_html(served: Served, page: Page):
    evil = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"><b>bold</b>'
    run_id = await waiting_run(served, {"ticket": evil, evil: evil}, run_id="xss-<b>run</b>")
    await page.goto(served.url)
    await expect(page.locator("#runs-body")).to_contain_text("xss-<b>run</b>")
    await page.goto(f"{served.url}/#/runs/{urllib.parse.quote(run_id, safe='')}")
    await expect(page.locator("#run-id")).to_have_text(run_id)
    await page.locator('#step-table tbody tr[data-step="0"]').get_by_role("button", name="Details").click()
    detail = page.locator("#step-0-detail")
    await expect(detail).to_contain_text("<script>window.__pwned = 1</script><img src=x onerror=")
    await expect(page.locator("#progress-summary")).to_contain_text("waits for the signal 'approval'")
    assert await page.evaluate("window.__pwned") is None
    assert await page.locator("#main b, #main img, #main script").count() == 0


async def test_graphs_queues_agents_and_namespaces(served: Served, page: Page):
    await served.client.execute(served.counting, {"to": 1}, timeout=20)
    await page.goto(f"{served.url}/#/graphs")
    await expect(page.locator("#graphs")).to_contain_text(served.approval.graph_id)
    counting_row = page.locator("#graphs tbody tr", has_text=served.counting.graph_id)
    await expect(counting_row.locator(".runs-count")).to_contain_text("completed")
    await page.get_by_role("link", name=served.approval.graph_id).click()
    await expect(page.locator('svg.graph g[data-node="approve"]')).to_be_visible()
    await expect(page.locator('svg.graph g[data-edge="approve>finish"]')).to_contain_text("approved")
    await page.get_by_role("link", name="Queues").click()
    await expect(page.locator("#queue-depths")).to_contain_text("default")
    await expect(page.locator("#queues")).to_contain_text("default")
    await expect(page.locator("#queues")).to_contain_text(f"{served.approval.graph_id}@1")
    await page.get_by_role("link", name="Agents").click()
    await expect(page.locator("#agents")).to_contain_text("worker")
    await expect(page.locator("#agents")).to_contain_text(f"graph:{served.counting.graph_id}@1")
    await page.get_by_role("link", name="Namespaces").click()
    await expect(page.locator("#namespaces")).to_contain_text("default/default")
    # Another namespace: its runs (none) are what the pages show from then on.
    await page.fill("#ns-tenant", "acme")
    await page.fill("#ns-project", "web")
    await page.click("#namespace-form button[type=submit]")
    await expect(page.locator("#namespace")).to_have_text("namespace acme/web")
    await expect(page.locator("#runs-body")).to_contain_text("No run matches.")


async def test_the_keyboard_reaches_every_section_and_the_focus_is_visible(served: Served, page: Page):
    await page.goto(served.url)
    await expect(page.locator("#runs-body")).to_be_visible()
    names = []
    for _ in range(8):
        await page.keyboard.press("Tab")
        names.append(await page.evaluate("document.activeElement.textContent.trim()"))
    for section in ("Runs", "Graphs", "Queues", "Agents", "Namespaces"):
        assert section in names, names
    outline = await page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none")
    await page.keyboard.press("Shift+Tab")
    focused = await page.evaluate("document.activeElement.textContent.trim()")
    await page.keyboard.press("Enter")
    if focused in ("Graphs", "Queues", "Agents", "Namespaces"):
        await expect(page.locator("h1")).to_have_text(focused)


@pytest.mark.parametrize("width", [390, 1280])
async def test_pages_fit_the_window(served: Served, page: Page, width: int):
    run_id = await waiting_run(served)
    await page.set_viewport_size({"width": width, "height": 800})
    for where in ("#/runs", f"#/runs/{run_id}", "#/graphs", "#/agents", "#/queues", "#/namespaces"):
        await page.goto(f"{served.url}/{where}")
        await expect(page.locator("h1")).to_be_visible()
        await asyncio.sleep(0.1)
        # Nothing wider than the window but the tables and the drawing, which scroll in their own box.
        overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{where} is {overflow}px wider than a {width}px window"


async def test_a_large_state_or_response_is_shown_collapsed(served: Served, page: Page):
    big = {"to": 1, "blob": "x" * 3000}
    await served.client.execute(served.counting, big, timeout=20)
    [run] = [r async for r in served.client.list_runs(graph_id=served.counting.graph_id)]
    await page.goto(f"{served.url}/#/runs/{run.run_id}")
    await page.locator('#step-table tbody tr[data-step="0"]').get_by_role("button", name="Details").click()
    folded = page.locator("#step-0-detail details").first
    await expect(folded.locator("summary")).to_contain_text("state (")
    assert await folded.get_attribute("open") is None
    await folded.locator("summary").click()
    await expect(folded.locator("pre")).to_contain_text("xxxxxxxx")
