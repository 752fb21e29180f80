"""The web UI that `cmo-server` serves: a small HTTP/JSON gateway over the engine and the registry, and its pages.

The gateway makes the calls the gRPC services make, with their field checks, their scopes and
their namespace rules (`ui_app`); the pages are plain files shipped in the package
(`static/`: no build step, nothing from a CDN). `UiServer` serves them with uvicorn on the
server's event loop, at CMO_UI_LISTEN.
"""

from cmo_server.http._app import ui_app
from cmo_server.http._server import UiServer

__all__ = ["UiServer", "ui_app"]
