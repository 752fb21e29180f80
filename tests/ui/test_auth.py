"""With authentication on (CMO_AUTH=jwt): the UI's API refuses a call without a token, or with one
that lacks the scope or the namespace, as gRPC does; the pages ask for a token and work with it."""

from __future__ import annotations

import httpx
from playwright.async_api import Page, expect

import cmo
from tests.ui.conftest import Console, Served, token
from tests.ui.test_actions import status_of
from tests.ui.test_pages import waiting_run


async def test_the_api_refuses_without_a_token_or_without_the_scope_or_the_namespace(secured: Served):
    run_id = await waiting_run(secured)
    async with httpx.AsyncClient(base_url=secured.url) as http:
        for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic eDp5"}):
            for method, path in (("GET", "/api/v1/runs"), ("GET", f"/api/v1/runs/{run_id}"), ("GET", "/api/v1/agents")):
                refused = await http.request(method, path, headers=headers)
                assert refused.status_code == 401, (path, headers)
                assert refused.json() == {"error": "missing or invalid credentials"}
                assert refused.headers["www-authenticate"] == "Bearer"
            posted = await http.post(f"/api/v1/runs/{run_id}/cancel", json={}, headers=headers)
            assert posted.status_code == 401
        # A reader may read, not cancel; without runs:admin, no terminate.
        reader = {"Authorization": f"Bearer {token('runs:read')}"}
        assert (await http.get(f"/api/v1/runs/{run_id}", headers=reader)).status_code == 200
        denied = await http.post(f"/api/v1/runs/{run_id}/cancel", json={}, headers=reader)
        assert denied.status_code == 403
        assert denied.json() == {"error": "this call needs the scope runs:write"}
        writer = {"Authorization": f"Bearer {token('runs:read runs:write')}"}
        denied = await http.post(f"/api/v1/runs/{run_id}/terminate", json={}, headers=writer)
        assert denied.json() == {"error": "this call needs the scope runs:admin"}
        # Graph versions need the scope GetGraph needs.
        graph = await http.get("/api/v1/graphs/ui-demo/versions/1", headers=reader)
        assert graph.status_code == 403
        # Another tenant's token finds no such namespace, as gRPC answers it.
        other = {"Authorization": f"Bearer {token(tenant='beta')}"}
        hidden = await http.get(f"/api/v1/runs/{run_id}", headers=other)
        assert hidden.status_code == 404
        assert hidden.json() == {"error": "namespace 'default/default' not found"}
        listed = await http.get("/api/v1/runs", params={"tenant": "beta"}, headers=other)
        assert listed.json()["runs"] == []
        # The session endpoint answers anyone whether a token is needed (the login form asks it).
        session = await http.get("/api/v1/session")
        assert session.json() == {"auth": True, "subject": None, "scopes": [], "namespaces": []}
        # The page itself holds no data and loads without a token.
        assert (await http.get("/")).status_code == 200
        assert (await http.get("/static/app.js")).status_code == 200
    info = await secured.client.get_run(run_id)
    assert info.status is cmo.RunStatus.WAITING  # nothing refused changed it


async def test_the_pages_ask_for_a_token_and_work_with_it(secured: Served, page: Page, console: Console):
    console.allowed.append("401")  # the refused token below: Chromium logs the 401 it got
    run_id = await waiting_run(secured)
    await page.goto(secured.url)
    await expect(page.locator("h1")).to_have_text("Log in")
    await page.fill("#token", "not-a-token")
    await page.click("#login button[type=submit]")
    await expect(page.locator("#login-status")).to_have_text("The server refused this token.")
    await page.fill("#token", secured.token)
    await page.click("#login button[type=submit]")
    await expect(page.locator(f'#runs-body tr[data-run="{run_id}"]')).to_contain_text("WAITING")
    # An action with the token: the signal goes through.
    await page.click(f'#runs-body tr[data-run="{run_id}"] a')
    await page.click("#open-signal")
    await page.fill("#signal-payload", '{"ok": true}')
    await page.click("#send-signal")
    await status_of(secured, run_id, cmo.RunStatus.COMPLETED)
    # The token stays for the tab's other pages, until logged out.
    await page.get_by_role("link", name="Agents").click()
    await expect(page.locator("#agents")).to_contain_text("worker")
    await page.click("#logout")
    await expect(page.locator("h1")).to_have_text("Log in")
    await page.reload()
    await expect(page.locator("h1")).to_have_text("Log in")
