"""The web UI in a real headless Chromium (Debian's, driven by Playwright) against a real server.

Each test gets an in-process `cmo-server` on a fresh SQLite file with its web UI on a free port,
a client, a worker serving the demo graphs, and a browser page. Every console error and uncaught
exception of the page fails the test; a failing test leaves a screenshot of its page under the
pytest temporary directory (`ui-screenshots/`) and prints where.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright

import cmo
from cmo_server.app import CmoServer
from cmo_server.config import AuthConfig, EngineLimits, ServerConfig, StoreConfig, UIConfig
from tests.ui.graphs import approval_graph, counting_graph

CHROMIUM = "/usr/bin/chromium"
SECRET = b"a-browser-test-secret-of-32-bytes-or-more"
ISSUER = "https://auth.ui.test"
ALL_SCOPES = "runs:read runs:write runs:admin workers registry:read registry:write"
LIMITS = EngineLimits(task_lease=timedelta(seconds=5), sweep_interval=timedelta(milliseconds=100))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/ui/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.ui)
            if not os.path.exists(CHROMIUM):
                item.add_marker(pytest.mark.skip(reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    item.stash.setdefault(FAILED, False)
    if report.when == "call" and report.failed:
        item.stash[FAILED] = True


FAILED = pytest.StashKey[bool]()


def token(scope: str = ALL_SCOPES, *, tenant: str = "*", project: str = "*", **extra: Any) -> str:
    """A bearer token the secured server accepts."""
    now = int(time.time())
    claims = {"sub": "ui-tester", "iss": ISSUER, "aud": "cmo", "exp": now + 600, "scope": scope}
    claims |= {"tenant": tenant, "project": project}
    return jwt.encode({**claims, **extra}, SECRET, algorithm="HS256", headers={"kid": "k1"})


@dataclass
class Served:
    """A server with its web UI, a client of it and a worker serving the demo graphs."""

    server: CmoServer
    client: cmo.Client
    url: str
    approval: cmo.Graph[dict[str, Any]]
    counting: cmo.Graph[dict[str, Any]]
    token: str = ""
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


def _config(tmp_path: Path, *, secured: bool) -> ServerConfig:
    config = ServerConfig(
        listen="127.0.0.1:0",
        store=StoreConfig(sqlite_path=str(tmp_path / "cmo.db")),
        limits=LIMITS,
        ui=UIConfig(listen="127.0.0.1:0"),
        shutdown_grace=timedelta(seconds=1),
    )
    if secured:
        (tmp_path / "auth.key").write_bytes(SECRET)
        auth = AuthConfig(
            mode="jwt", keys_file=str(tmp_path / "auth.key"), key_id="k1", algorithm="HS256", issuer=ISSUER
        )
        config = replace(config, auth=auth)
    return config


async def _served(tmp_path: Path, *, secured: bool) -> AsyncIterator[Served]:
    bearer = token() if secured else None
    async with (
        CmoServer.running(_config(tmp_path, secured=secured)) as server,
        await cmo.Client.connect(f"127.0.0.1:{server.port}", token=bearer) as client,
    ):
        approval, counting = approval_graph(), counting_graph()
        worker = cmo.Worker(client, [approval, counting], poll_wait=1.0)
        running = asyncio.create_task(worker.run())
        try:
            yield Served(server, client, f"http://127.0.0.1:{server.ui_port}", approval, counting, bearer or "")
        finally:
            worker.shutdown()
            await asyncio.wait_for(running, 30)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    async for s in _served(tmp_path, secured=False):
        yield s


@pytest.fixture
async def secured(tmp_path: Path) -> AsyncIterator[Served]:
    async for s in _served(tmp_path, secured=True):
        yield s


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            await launched.close()


@dataclass
class Console:
    """What a page said on its console that counts as an error, and what it may say."""

    errors: list[str] = field(default_factory=list)
    allowed: list[str] = field(default_factory=list)
    """Substrings of errors a test expects (a refused token's 401, logged by Chromium)."""

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(a in e for a in self.allowed)]


@pytest.fixture
def console() -> Console:
    return Console()


@pytest.fixture
async def page(
    browser: Browser, console: Console, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Page]:
    """A 1280x800 page whose console errors fail the test; a screenshot is kept if the test fails."""
    context = await browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    opened = await context.new_page()
    opened.set_default_timeout(10_000)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            console.errors.append(f"{message.text} ({message.location.get('url', '')})")

    opened.on("console", on_console)
    opened.on("pageerror", lambda error: console.errors.append(f"uncaught: {error}"))
    try:
        yield opened
    finally:
        if request.node.stash.get(FAILED, False):
            folder = tmp_path_factory.getbasetemp() / "ui-screenshots"
            folder.mkdir(exist_ok=True)
            shot = folder / f"{request.node.name}.png"
            try:
                await opened.screenshot(path=str(shot), full_page=True)
                print(f"\nscreenshot of the failing page: {shot}")
            except Exception as err:  # the page may be gone with what failed
                print(f"\nno screenshot: {err}")
        await context.close()
    unexpected = console.unexpected()
    assert not unexpected, f"console errors on the page: {unexpected}"
