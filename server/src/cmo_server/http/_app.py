"""The web UI's ASGI application: the JSON API under /api/v1 and the pages' static files."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cmo_server.auth import Authenticator
from cmo_server.engine import Engine
from cmo_server.http._calls import NO_STORE, Call, Handler, error_response, guarded
from cmo_server.http._catalog import CatalogEndpoints
from cmo_server.http._runs import RunEndpoints
from cmo_server.progress import Explainer, PollerBook
from cmo_server.ratelimit import NamespaceRates
from cmo_server.registry import Registry

__all__ = ["STATIC", "ui_app"]

STATIC = ("cmo_server.http", "static")
"""Where the pages' files are: shipped inside the package (no CDN, no build step)."""

RUNS = "/cmo.api.v1.RunService/"
GRAPHS = "/cmo.api.v1.WorkerService/"
AGENTS = "/cmo.api.v1.RegistryService/"

# Scripts, styles and requests from this origin only; nothing inline, no framing.
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        b"base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


class _SecurityHeaders:
    """Adds SECURITY_HEADERS to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self._app(scope, receive, sending)


def ui_app(
    engine: Engine,
    *,
    registry: Registry | None = None,
    explainer: Explainer | None = None,
    pollers: PollerBook | None = None,
    authenticator: Authenticator | None = None,
    rates: NamespaceRates | None = None,
    max_body: int = 8 * 1024 * 1024,
) -> ASGIApp:
    """The web UI over these engine and registry objects (those the gRPC services use).

    `authenticator`: every API call needs a bearer token it accepts, with the scope of the gRPC
    method the endpoint stands for. `rates`: the per-namespace rate limits the gRPC services are
    under (the same buckets: a namespace's calls count alike on both). `max_body`: the largest
    request body, in bytes.
    """
    runs = RunEndpoints(engine, explainer)
    catalog = CatalogEndpoints(engine, registry=registry, pollers=pollers, authenticator=authenticator)

    def api(path: str, method: str | None, handler: Handler, verb: str = "GET") -> Route:
        endpoint = guarded(method, handler, authenticator=authenticator, max_body=max_body, rates=rates)
        return Route(f"/api/v1{path}", endpoint, methods=[verb])

    async def session(request: Request) -> Response:
        # Answers without a token (the page asks whether to show the login form); a token given is checked.
        if authenticator is None or "authorization" in request.headers:
            return await guarded(None, catalog.session, authenticator=authenticator, max_body=0)(request)
        return JSONResponse(await catalog.session(Call(request, max_body=0, principal=None)), headers=NO_STORE)

    async def index(request: Request) -> Response:
        return FileResponse(_static_file("index.html"), headers={"Cache-Control": "no-cache"})

    routes: list[BaseRoute] = [
        Route("/", index, methods=["GET"]),
        Mount("/static", app=StaticFiles(packages=[STATIC]), name="static"),
        Route("/api/v1/session", session, methods=["GET"]),
        api("/runs", RUNS + "ListRuns", runs.list_runs),
        # Ids may hold a slash (as %2F, which the path arrives decoded from): `path` takes it, and the
        # routes with a suffix come before the plain one, which would take "<id>/history" whole.
        api("/runs/{run_id:path}/history", RUNS + "GetHistory", runs.history),
        api("/runs/{run_id:path}/export", RUNS + "GetHistory", runs.export),
        api("/runs/{run_id:path}/verify", RUNS + "GetHistory", runs.verify),
        api("/runs/{run_id:path}/signal", RUNS + "SignalRun", runs.signal, "POST"),
        api("/runs/{run_id:path}/cancel", RUNS + "CancelRun", runs.cancel, "POST"),
        api("/runs/{run_id:path}/terminate", RUNS + "TerminateRun", runs.terminate, "POST"),
        api("/runs/{run_id:path}/fork", RUNS + "ForkRun", runs.fork, "POST"),
        api("/runs/{run_id:path}", RUNS + "GetRun", runs.get_run),
        api("/graphs", GRAPHS + "ListGraphs", catalog.graphs),
        api("/graphs/{graph_id:path}/versions/{version}", GRAPHS + "GetGraph", catalog.graph),
        api("/agents", AGENTS + "ListAgents", catalog.agents),
        api("/queues", AGENTS + "ListAgents", catalog.queues),
        api("/namespaces", None, catalog.namespaces),
    ]

    async def http_error(request: Request, err: Exception) -> Response:
        assert isinstance(err, HTTPException)
        if err.status_code == 404:
            message = f"{request.url.path[:200]} is not a page or an API endpoint"
        elif err.status_code == 405:
            message = f"{request.method} is not a method of {request.url.path[:200]}"
        else:
            message = err.detail
        return JSONResponse({"error": message}, status_code=err.status_code, headers=NO_STORE)

    async def crashed(request: Request, err: Exception) -> Response:
        return error_response(err, request.url.path)[0]

    handlers: dict[Any, Any] = {HTTPException: http_error, Exception: crashed}
    # A run's history of 1,000 steps is ~740 kB of JSON: gzip (for the browsers that ask, in a
    # thread past 128 kB) makes it a fraction of that over a network. Level 1: at level 5 the
    # 1,000-step page opened 140-220 ms later over loopback; at 1 it is level with no gzip.
    app = GZipMiddleware(Starlette(routes=routes, exception_handlers=handlers), minimum_size=1024, compresslevel=1)
    return _SecurityHeaders(app)


def _static_file(name: str) -> str:
    from importlib.resources import files

    return str(files(STATIC[0]).joinpath(STATIC[1], name))
