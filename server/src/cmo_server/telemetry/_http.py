"""The metrics and probe endpoint: `/metrics`, `/healthz`, `/readyz` over plain HTTP/1.1.

A few dozen lines on `asyncio.start_server` rather than prometheus_client's threaded server: what
it serves lives on the event loop (the store, whose SQLite connection is the loop's, and the gRPC
health servicer), so a thread would have to hop back to the loop for every scrape anyway. One
request per connection, then close: scrapers and probes reconnect each time regardless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from cmo_server.store import Store
from cmo_server.telemetry._metrics import PrometheusMetrics, StoreGauges

__all__ = ["MetricsEndpoint", "serve_metrics"]

logger = logging.getLogger(__name__)

MAX_HEAD = 16 * 1024
"""Largest request head (request line and headers) read; scrapers send a few hundred bytes."""
READ_TIMEOUT = 10.0
"""A client that sends no complete request head within this is dropped."""

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Service Unavailable",
}


class MetricsEndpoint:
    """Serves a registry and two probes on one host:port; `await start()`, then `aclose()`.

    Args:
        registry: What `/metrics` renders (text format, or OpenMetrics when the scraper asks).
        refresh: Awaited before each render (counts read from the store).
        ready: Whether `/readyz` answers 200 (else 503). `/healthz` answers 200 while this serves.
        scraper: With authentication on: the HTTP status (200, 401, 403) a scrape of `/metrics`
            gets for its `Authorization` header. The probes stay open: they tell nothing but
            whether the server is up.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        refresh: Callable[[], Awaitable[None]],
        ready: Callable[[], Awaitable[bool]],
        scraper: Callable[[str], int] | None = None,
    ) -> None:
        self._registry = registry
        self._refresh = refresh
        self._ready = ready
        self._scraper = scraper
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[object]] = set()
        self.port = 0
        """The bound port (useful when the configured one was 0)."""

    async def start(self, listen: str) -> None:
        """Listen on host:port."""
        host, _, port = listen.rpartition(":")
        self._server = await asyncio.start_server(self._serve, host.strip("[]") or None, int(port))
        self.port = self._server.sockets[0].getsockname()[1]

    async def aclose(self) -> None:
        """Stop listening and drop open connections; idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            for handler in list(self._handlers):  # a client that sends nothing must not hold us up
                handler.cancel()
            await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        if handler is not None:
            self._handlers.add(handler)
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
                return
            if len(head) > MAX_HEAD:
                return
            status, content_type, body = await self._respond(head.decode("latin-1"))
            reply = (
                f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode("latin-1")
            writer.write(reply + (b"" if head.startswith(b"HEAD ") else body))
            await writer.drain()
        except ConnectionError:
            pass
        except Exception:
            logger.exception("metrics endpoint: request failed")
        finally:
            if handler is not None:
                self._handlers.discard(handler)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _respond(self, head: str) -> tuple[int, str, bytes]:
        request_line, *header_lines = head.split("\r\n")
        parts = request_line.split(" ")
        if len(parts) != 3:
            return 400, "text/plain", b"bad request\n"
        method, target, _ = parts
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"only GET and HEAD\n"
        path = target.partition("?")[0]
        if path == "/metrics":
            headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines if h)}
            if self._scraper is not None and (allowed := self._scraper(headers.get("authorization", ""))) != 200:
                return allowed, "text/plain", b"missing or invalid credentials\n"
            await self._refresh()
            encode, content_type = choose_encoder(headers.get("accept", ""))
            return 200, content_type, encode(self._registry)
        if path == "/healthz":
            return 200, "text/plain", b"ok\n"
        if path == "/readyz":
            if await self._ready():
                return 200, "text/plain", b"ready\n"
            return 503, "text/plain", b"not serving\n"
        return 404, "text/plain", b"not found: try /metrics, /healthz or /readyz\n"


@asynccontextmanager
async def serve_metrics(
    listen: str,
    metrics: PrometheusMetrics,
    *,
    store: Store,
    parked_polls: Callable[[], int],
    ready: Callable[[], Awaitable[bool]],
    scraper: Callable[[str], int] | None = None,
) -> AsyncIterator[MetricsEndpoint]:
    """Serve `metrics` and the store gauges on `listen` until the context exits."""
    gauges = StoreGauges(store, parked_polls=parked_polls)
    metrics.registry.register(gauges)
    endpoint = MetricsEndpoint(metrics.registry, refresh=gauges.refresh, ready=ready, scraper=scraper)
    await endpoint.start(listen)
    try:
        yield endpoint
    finally:
        await endpoint.aclose()
        metrics.registry.unregister(gauges)
