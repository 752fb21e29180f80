"""HTTP requests as recorded activities: `await ctx.http("POST", url, json=...)`.

A call tries its request under its own retry policy before anything is recorded: a network error,
a 429 or a 5xx answer is tried again, after the pause the policy gives or, for a 429 or a 503, the
longer one its Retry-After header asks for. The last answer is the call's outcome. It is recorded
and returned whatever its status, unless `raise_for_status` makes an error status (4xx, 5xx) a
failure: recorded as an `HttpStatusError`, raised, and sent again by a node retry.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import weakref
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from opentelemetry import trace

from cmo._activity import Activity, activity_info
from cmo._retry import RetryPolicy
from cmo.errors import HttpStatusError
from cmo.serialization import parse_json

__all__ = ["DEFAULT_RETRY", "RETRY_AFTER_LIMIT", "HttpResponse", "close_http_client", "http_activity"]

KIND_HTTP = "http"
IDEMPOTENCY_HEADER = "Idempotency-Key"
DEFAULT_RETRY = RetryPolicy(max_attempts=3, initial_interval=timedelta(milliseconds=200))
"""ctx.http's tries when it is given no policy: 3, 0.2 s then 0.4 s apart."""
RETRY_AFTER_LIMIT = timedelta(seconds=60)
"""The longest Retry-After honoured when the policy has no max_interval; a longer one ends the tries."""
BODY_EXCERPT = 200
"""Characters of the body an HttpStatusError shows."""
URL_SHOWN = 200
"""Characters of the URL an HttpStatusError shows."""


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
    method: str,
    url: str,
    headers: dict[str, str],
    body: str | None,
    timeout_s: float,
    *,
    raise_for_status: bool,
    retry: RetryPolicy,
) -> dict[str, Any]:
    # The call's idempotency key goes with every try, so a server that honours it can de-duplicate
    # the tries, and the one request that may be sent twice (in flight when a worker died).
    info = activity_info()
    sent = {IDEMPOTENCY_HEADER: info.idempotency_key, **headers}
    content = base64.b64decode(body) if body is not None else None
    pause = retry.initial_interval.total_seconds()
    tries = 1
    while True:
        trace.get_current_span().set_attribute("cmo.activity.try_count", tries)
        last = retry.max_attempts != 0 and tries >= retry.max_attempts
        try:
            # httpx's timeout bounds each phase (connect, each read …); this bounds the whole try.
            call = _client().request(method, url, headers=sent, content=content, timeout=timeout_s)
            response = await asyncio.wait_for(call, timeout_s + 1)
        except (httpx.TransportError, TimeoutError) as err:  # the network, not the server, failed
            if last or type(err).__name__ in retry.non_retryable_errors:
                raise
            delay = pause
        else:
            again = None if last else _retry_delay(response, pause, retry)
            if again is None:
                break
            delay = again
        await asyncio.sleep(delay)
        pause *= retry.backoff
        if retry.max_interval is not None:
            pause = min(pause, retry.max_interval.total_seconds())
        tries += 1
    if raise_for_status and response.status_code >= 400:
        # Recorded as its type and message; the node gets the error rebuilt from the record.
        raise HttpStatusError(
            f"http.{method}",
            info.seq,
            method=method,
            url=_shown_url(response.url),
            status=response.status_code,
            body=_excerpt(response.text),
        )
    return {
        "status": response.status_code,
        "headers": dict(response.headers),
        "body": base64.b64encode(response.content).decode(),
    }


def _retry_delay(response: httpx.Response, pause: float, retry: RetryPolicy) -> float | None:
    """Seconds before trying again after this answer; None to keep it (not transient, or asked to wait too long)."""
    status = response.status_code
    if status != 429 and status < 500:
        return None
    asked = _retry_after(response) if status in (429, 503) else None
    if asked is None:
        return pause
    if asked > (retry.max_interval or RETRY_AFTER_LIMIT).total_seconds():
        return None  # the server will not be ready soon: the node (or its retry policy) decides
    return max(pause, asked)


def _retry_after(response: httpx.Response) -> float | None:
    """The Retry-After header's delay in seconds (it is a number of seconds or an HTTP date), if any."""
    value = response.headers.get("retry-after", "").strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def _shown_url(url: httpx.URL) -> str:
    shown = str(url.copy_with(query=None, fragment=None, userinfo=b""))
    return shown if len(shown) <= URL_SHOWN else shown[: URL_SHOWN - 1] + "…"


def _excerpt(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= BODY_EXCERPT else line[: BODY_EXCERPT - 1] + "…"


def http_activity(method: str, *, retry: RetryPolicy | None) -> Activity[..., dict[str, Any]]:
    """The activity that sends one request with this method, tried per `retry` (`DEFAULT_RETRY`)."""
    policy = retry or DEFAULT_RETRY

    async def send(
        method: str,
        url: str,
        headers: dict[str, str],
        body: str | None,
        timeout_s: float,
        raise_for_status: bool = False,
    ) -> dict[str, Any]:
        return await _request(method, url, headers, body, timeout_s, raise_for_status=raise_for_status, retry=policy)

    # It tries by itself (honouring Retry-After), so the activity runner tries once.
    return Activity(send, name=f"http.{method.upper()}", retry=RetryPolicy(max_attempts=1), kind=KIND_HTTP)
