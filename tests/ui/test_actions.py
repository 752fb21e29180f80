"""Each action of the run page, done in the browser and checked on the server: signal (a JSON editor
that refuses what is not JSON before sending), cancel, terminate, fork from a step with an edited
state, and the export download, which is the SDK's export of the run."""

from __future__ import annotations

import json

from playwright.async_api import Page, expect

import cmo
from cmo.testing import RunHistory
from tests.support.waiting import assert_eventually
from tests.ui.conftest import Served
from tests.ui.test_pages import waiting_run


async def status_of(served: Served, run_id: str, status: cmo.RunStatus) -> cmo.RunInfo:
    async def reached() -> cmo.RunInfo:
        info = await served.client.get_run(run_id)
        assert info.status is status, info
        return info

    return await assert_eventually(reached, timeout=15)


async def test_a_signal_is_validated_as_json_then_resumes_the_waiting_run(served: Served, page: Page):
    run_id = await waiting_run(served)
    await page.goto(f"{served.url}/#/runs/{run_id}")
    await page.click("#open-signal")
    await expect(page.locator("#signal-name")).to_have_value("approval")  # what the run waits for
    payload = page.locator("#signal-payload")
    await payload.fill('{"ok": true,')
    await expect(page.locator("#signal-payload-check")).to_contain_text("Not JSON")
    await expect(payload).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#send-signal")).to_be_disabled()
    await payload.fill('{"ok": true, "by": "<i>ops</i>"}')
    await expect(page.locator("#signal-payload-check")).to_have_text("Valid JSON.")
    await page.click("#send-signal")
    await expect(page.locator("#action-status")).to_contain_text("delivered")
    info = await status_of(served, run_id, cmo.RunStatus.COMPLETED)
    assert info.result == {
        "ticket": "t-1",
        "planned": True,
        "lookup": {"ticket": "t-1", "customer": "ACME", "notes": ["first", "second"]},
        "decision": {"ok": True, "by": "<i>ops</i>"},
        "done": True,
    }
    # The page follows: the run ends, the graph shows the whole path, the signal is listed.
    await expect(page.locator("#run-head")).to_contain_text("COMPLETED", timeout=10_000)
    await expect(page.locator('svg.graph g[data-edge="approve>finish"]')).to_have_class("edge taken")
    await expect(page.locator('svg.graph g[data-node="__end__"]')).to_have_class("node visited end")
    await expect(page.locator("#waits-list")).to_contain_text(
        'signal approval — received {"by":"<i>ops</i>","ok":true}'
    )
    await expect(page.locator("#step-table tbody tr[data-step]")).to_have_count(3)
    # The step that waited and was resumed by the signal is no retry.
    await expect(page.locator('#step-table tbody tr[data-step="1"] td.attempts')).to_have_text("2 (resumed)")
    assert await page.locator('#step-table tbody tr[data-step="1"] td.attempts strong').count() == 0
    await expect(page.locator("#open-signal")).to_be_disabled()


async def test_cancel_from_the_page_ends_the_waiting_run_cancelled(served: Served, page: Page):
    run_id = await waiting_run(served)
    await page.goto(f"{served.url}/#/runs/{run_id}")
    await page.click("#open-cancel")
    await page.fill("#cancel-reason", "customer withdrew")
    await page.click("#confirm-cancel")
    await expect(page.locator("#action-status")).to_be_visible()
    info = await status_of(served, run_id, cmo.RunStatus.CANCELLED)
    assert info.failure is not None
    assert info.failure.message == "the run was cancelled: customer withdrew"
    await expect(page.locator("#failure-message")).to_contain_text("customer withdrew", timeout=10_000)


async def test_terminate_from_the_page_ends_the_run_at_once(served: Served, page: Page):
    run_id = await waiting_run(served)
    await page.goto(f"{served.url}/#/runs/{run_id}")
    await page.click("#open-terminate")
    await page.fill("#terminate-reason", "stuck for good")
    await page.click("#confirm-terminate")
    await expect(page.locator("#action-status")).to_have_text("The run is TERMINATED.")
    info = await status_of(served, run_id, cmo.RunStatus.TERMINATED)
    assert info.failure is not None
    assert info.failure.message == "stuck for good"
    await expect(page.locator("#run-head")).to_contain_text("TERMINATED")
    await expect(page.locator("#failure-message")).to_have_text("Terminated: stuck for good")


async def test_fork_from_a_step_with_an_edited_state(served: Served, page: Page):
    run_id = await waiting_run(served)
    await page.goto(f"{served.url}/#/runs/{run_id}")
    await page.locator('#step-table tbody tr[data-step="0"]').get_by_role("button", name="Details").click()
    await page.get_by_role("button", name="Fork from step 0…").click()
    editor = page.locator("#fork-state")
    state = json.loads(await editor.input_value())
    assert state["ticket"] == "t-1"  # the step's own state, to edit
    await editor.fill("[1, 2]")
    await expect(page.locator("#fork-state-check")).to_have_text("Must be a JSON object ({…}).")
    await expect(page.locator("#confirm-fork")).to_be_disabled()
    await editor.fill(json.dumps({**state, "ticket": "t-2", "edited": True}))
    await page.fill("#fork-run-id", "forked-run")
    await page.click("#confirm-fork")
    await expect(page.locator("#run-id")).to_have_text("forked-run")
    await expect(page.locator("#run-head")).to_contain_text(f"{run_id} at step 0")
    fork = await status_of(served, "forked-run", cmo.RunStatus.WAITING)
    assert fork.parent_run_id == run_id
    [shared] = (await served.client.get_history("forked-run"))[:1]
    assert shared.state["ticket"] == "t-2"
    assert shared.state["edited"] is True
    source = await served.client.get_run(run_id)
    assert source.status is cmo.RunStatus.WAITING  # the source is untouched


async def test_the_export_download_is_the_sdks_export_of_the_run(served: Served, page: Page):
    run_id = await waiting_run(served)
    await served.client.signal(run_id, "approval", {"ok": False})
    await status_of(served, run_id, cmo.RunStatus.COMPLETED)
    await page.goto(f"{served.url}/#/runs/{run_id}")
    async with page.expect_download() as downloading:
        await page.click("#export")
    download = await downloading.value
    assert download.suggested_filename == f"run-{run_id}.json"
    path = await download.path()
    text = path.read_text(encoding="utf-8")
    expected = await served.client.export_history(run_id)
    assert json.loads(text) == expected.to_json()
    assert text == expected.dumps()
    replayable = RunHistory.from_json(json.loads(text))
    assert [s.node_id for s in replayable.steps] == ["plan", "approve"]
    await expect(page.locator("#action-status")).to_have_text("Export downloaded.")


async def test_verify_replays_the_history_through_its_graph(served: Served, page: Page):
    run_id = await waiting_run(served)
    await served.client.signal(run_id, "approval", {"ok": True})
    await status_of(served, run_id, cmo.RunStatus.COMPLETED)
    await page.goto(f"{served.url}/#/runs/{run_id}")
    await page.click("#verify")
    await expect(page.locator("#action-status")).to_contain_text(
        f"Verified: 3 step(s) replay through {served.approval.graph_id}@1"
    )
