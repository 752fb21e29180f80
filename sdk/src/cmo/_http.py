"""HTTP requests as recorded activities: `await ctx.http("POST", url, json=...)`."""

from __future__ import annotations

import asyncio
import base64
import weakref
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx

from cmo._activity import Activity, activity_info
from cmo._retry import RetryPolicy
from cmo.serialization import parse_json

__all__ = ["HttpResponse", "close_http_client", "http_activity"]

KIND_HTTP = "http"
IDEMPOTENCY_HEADER = "Idempotency-Key"


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A recorded HTTP response: the same object on the first run, on a retry and on replay."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def text(self) -> str:
        """The body decoded as UTF-8."""
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON."""
        return parse_json(self.body)

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> HttpResponse:
        """Rebuild a response from its recorded form."""
        return cls(data["status"], dict(data["headers"]), base64.b64decode(data["body"]))


# One client per event loop (a client is bound to the loop that made it), shared by every request:
# making a client costs ~40 ms (it builds an SSL context even for plain http) and a shared one
# keeps connections alive between requests.
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = weakref.WeakKeyDictionary()


def _client() -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        client = _clients[loop] = httpx.AsyncClient()
    return client


async def close_http_client() -> None:
    """Close the running event loop's shared HTTP client, if it has one (the worker does at exit)."""
    client = _clients.pop(asyncio.get_running_loop(), None)
    if client is not None:
        await client.aclose()


async def _request(
    method: str, url: str, headers: dict[str, str], body: str | None, timeout_s: float
) -> dict[str, Any]:
    # The call's idempotency key goes with the request, so a server that honours it can
    # de-duplicate the one request that may be sent twice (in flight when a worker died).
    sent = {IDEMPOTENCY_HEADER: activity_info().idempotency_key, **headers}
    content = base64.b64decode(body) if body is not None else None
    response = await _client().request(method, url, headers=sent, content=content, timeout=timeout_s)
    return {
        "status": response.status_code,
        "headers": dict(response.headers),
        "body": base64.b64encode(response.content).decode(),
    }


def http_activity(method: str, *, retry: RetryPolicy | None, timeout: timedelta) -> Activity[..., dict[str, Any]]:
    """The activity that sends one request with this method (network errors are retried)."""
    return Activity(
        _request,
        name=f"http.{method.upper()}",
        retry=retry or RetryPolicy(max_attempts=3, initial_interval=timedelta(milliseconds=200)),
        timeout=timeout + timedelta(seconds=1),
        kind=KIND_HTTP,
    )
