"""One HTTP call of the gateway: its caller, its namespace, its input, and its errors as JSON.

Each API endpoint stands for one gRPC method (`/cmo.api.v1.RunService/GetRun`, ...): with
authentication on, a call needs `Authorization: Bearer <token>`, checked by the server's own
`Authenticator` for that method's scope, and the caller is set as the call's `CALLER`, so that
the namespace a call names is resolved, and refused, exactly as the gRPC services do it. Write
calls are audited under the method's name, as there.

Errors are the domain's (`cmo_server.errors`), raised by the same checks and the same engine
calls as behind gRPC, and answered as `{"error": "<field>: <reason>", "field": ...}` with the
HTTP status that says the same; anything else is logged and answered with a plain 500.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from cmo_server.api import CHARGE, Charge, check_namespace, status_for
from cmo_server.auth import AUDITED, CALLER, Authenticator, Principal, audit
from cmo_server.domain import Namespace
from cmo_server.errors import InvalidArgument, ResourceExhausted, Unauthenticated
from cmo_server.ratelimit import NamespaceRates

__all__ = [
    "Call",
    "Endpoint",
    "error_response",
    "guarded",
    "optional_int",
    "optional_time",
    "text_field",
]

Handler = Callable[["Call"], Awaitable[Response | dict[str, Any]]]
Endpoint = Callable[[Request], Awaitable[Response]]

# The HTTP status that says what each gRPC status of a domain error says.
_HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
}
NO_STORE = {"Cache-Control": "no-store"}


@dataclass(frozen=True, slots=True)
class _Audited:
    """What `audit` reads of a request: its namespace."""

    namespace: Namespace


class Call:
    """One API request, as its handler sees it: query, path and body fields, each checked by name."""

    def __init__(self, request: Request, *, max_body: int, principal: Principal | None) -> None:
        self.request = request
        self.principal = principal
        self._max_body = max_body
        self.namespace: Namespace | None = None
        """The namespace the call resolved, once it has (for the audit record)."""

    def path(self, name: str) -> str:
        """A path parameter (a run id, a graph id), NUL-free."""
        return _no_nul(name, str(self.request.path_params[name]))

    def query(self, name: str) -> str:
        """A query parameter ("" when absent), NUL-free."""
        values = self.request.query_params.getlist(name)
        if len(values) > 1:
            raise InvalidArgument(name, "is given more than once")
        return _no_nul(name, values[0] if values else "")

    def resolve_namespace(self) -> Namespace:
        """The namespace of `?tenant=&project=` (default/default), if the caller may use it."""
        self.namespace = check_namespace("namespace", self.query("tenant"), self.query("project"))
        return self.namespace

    async def body(self) -> dict[str, Any]:
        """The request's JSON object (a POST must say `Content-Type: application/json`)."""
        kind = self.request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if kind != "application/json":
            # Also what keeps another site's plain form from posting here: it cannot send JSON
            # without a CORS preflight, which this server never grants.
            raise InvalidArgument("content-type", "must be application/json")
        data = bytearray()
        async for chunk in self.request.stream():
            data += chunk
            if len(data) > self._max_body:
                raise ResourceExhausted(f"body: over the limit of {self._max_body} bytes")
        try:
            document = json.loads(bytes(data) or b"{}")
        except (ValueError, RecursionError):
            raise InvalidArgument("body", "is not JSON") from None
        if not isinstance(document, dict):
            raise InvalidArgument("body", "must be a JSON object")
        return document


def text_field(body: dict[str, Any], name: str) -> str:
    """A string field of a body ("" when absent or null), NUL-free."""
    value = body.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidArgument(name, "must be a string")
    return _no_nul(name, value)


def optional_int(call: Call, name: str, default: int) -> int:
    """An integer query parameter, or `default` when it is absent."""
    raw = call.query(name)
    if not raw:
        return default
    if not (raw.isascii() and raw.lstrip("-").isdigit()) or len(raw) > 12:
        raise InvalidArgument(name, f"must be an integer, got {raw[:20]!r}")
    return int(raw)


def optional_time(call: Call, name: str) -> datetime | None:
    """An ISO 8601 time query parameter (UTC when it names no zone), or None when it is absent."""
    raw = call.query(name)
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidArgument(name, "must be an ISO 8601 time such as 2026-12-01T10:00:00Z") from None
    moment = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    if moment.year < 1970:
        raise InvalidArgument(name, "must be after 1970")
    return moment


def _no_nul(field: str, value: str) -> str:
    if "\x00" in value:
        raise InvalidArgument(field, "must not contain a NUL character")
    return value


def error_response(err: Exception, where: str) -> tuple[Response, str]:
    """The JSON answer to a failed call, and its status's gRPC name (for the audit log).

    The status and message are the ones the gRPC services answer with (`status_for`: the
    domain's errors as they are, the storage being down as UNAVAILABLE, anything else logged).
    """
    code, message = status_for(err, where)
    status = _HTTP_STATUS.get(code, 500)
    headers = dict(NO_STORE)
    if isinstance(err, Unauthenticated):
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(err, ResourceExhausted) and not err.retry_after:
        status = 413  # a size limit: waiting does not cure it
    elif isinstance(err, ResourceExhausted):
        headers["Retry-After"] = str(max(1, math.ceil(err.retry_after or 1)))
    body: dict[str, Any] = {"error": message}
    if isinstance(err, InvalidArgument):
        body["field"] = err.field
    return JSONResponse(body, status_code=status, headers=headers), code.name


def guarded(
    method: str | None,
    handler: Handler,
    *,
    authenticator: Authenticator | None,
    max_body: int,
    rates: NamespaceRates | None = None,
) -> Endpoint:
    """An endpoint that stands for the gRPC `method` (its scope, its audit record, its rate limit).

    `method` None: any authenticated caller may call it (with authentication on). With `rates`, a
    call is charged to the first namespace it resolves, as a gRPC call is (429 with Retry-After).
    """

    async def endpoint(request: Request) -> Response:
        principal = None
        code = "OK"
        call = None
        token = None
        try:
            if authenticator is not None:
                headers = [("authorization", v) for v in request.headers.getlist("authorization")]
                principal = authenticator.principal(headers)
                if method is not None:
                    authenticator.authorize(principal, method, None)
                token = CALLER.set(principal)
            if rates is not None:
                CHARGE.set(Charge(rates))
            call = Call(request, max_body=max_body, principal=principal)
            result = await handler(call)
            response = result if isinstance(result, Response) else JSONResponse(result, headers=NO_STORE)
        except Exception as err:
            response, code = error_response(err, method or request.url.path)
        finally:
            if token is not None:
                CALLER.reset(token)
        if method in AUDITED:
            assert method is not None
            namespace = call.namespace if call is not None and call.namespace is not None else Namespace()
            audit(method, who=principal.subject if principal else "", request=_Audited(namespace), outcome=code)
        return response

    return endpoint
