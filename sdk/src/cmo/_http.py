"""HTTP requests as recorded activities: `await ctx.http("POST", url, json=...)`."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx

from cmo._activity import Activity, activity_info
from cmo._retry import RetryPolicy
from cmo.serialization import parse_json

__all__ = ["HttpResponse", "http_activity"]

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


async def _request(
    method: str, url: str, headers: dict[str, str], body: str | None, timeout_s: float
) -> dict[str, Any]:
    # The call's idempotency key goes with the request, so a server that honours it can
    # de-duplicate the one request that may be sent twice (in flight when a worker died).
    sent = {IDEMPOTENCY_HEADER: activity_info().idempotency_key, **headers}
    content = base64.b64decode(body) if body is not None else None
    async with httpx.AsyncClient(timeout=timeout_s) as client:
        response = await client.request(method, url, headers=sent, content=content)
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
