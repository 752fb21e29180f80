"""The web UI's HTTP server: uvicorn, on the server's own event loop, on a socket bound beforehand.

The socket is bound before anything is served, so that a port in use is one line naming
CMO_UI_LISTEN (or, for `start-dev`'s default address, a warning and no UI) rather than uvicorn's
`sys.exit`. uvicorn's own signal handling is left out: `cmo-server` has its own, and stops this
server with the rest (`aclose`). With CMO_TLS_* set it speaks HTTPS with the gRPC port's
certificate, so a token typed into the page does not cross the network in the clear.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Iterator
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from cmo_server.config import ConfigError, TLSConfig

__all__ = ["UiServer"]

logger = logging.getLogger(__name__)


def _tls_options(tls: TLSConfig | None) -> dict[str, Any]:
    if tls is None or not tls.cert_file:
        return {}
    options: dict[str, Any] = {"ssl_certfile": tls.cert_file, "ssl_keyfile": tls.key_file}
    if tls.client_ca_file:
        options |= {"ssl_ca_certs": tls.client_ca_file, "ssl_cert_reqs": ssl.CERT_REQUIRED}
    return options


class _Uvicorn(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """No signal handlers of its own: the process's are `cmo-server`'s."""
        yield


class UiServer:
    """Serves an ASGI app on host:port: `bind()`, then `run()` in a task, then `aclose()`."""

    def __init__(
        self,
        app: ASGIApp,
        listen: str,
        *,
        optional: bool = False,
        grace: float = 5.0,
        tls: TLSConfig | None = None,
    ) -> None:
        """Serve `app` on `listen` once bound.

        `tls` with a certificate: HTTPS with it (the gRPC port's), and with a client CA, only for
        browsers that present a certificate it signed.
        """
        self._listen = listen
        self._optional = optional
        self._socket: socket.socket | None = None
        self._finished = asyncio.Event()
        self._started = False
        self._grace = max(1, int(grace))
        config = uvicorn.Config(
            app,
            log_config=None,  # the server configures logging once, at its entry point
            access_log=False,
            lifespan="off",
            server_header=False,
            proxy_headers=False,
            ws="none",
            timeout_graceful_shutdown=self._grace,
            **_tls_options(tls),
        )
        self._server = _Uvicorn(config)
        self.port = 0
        """The bound port (useful when the configured one was 0); 0 until bound."""

    def bind(self) -> bool:
        """Listen on the address; False (logged) if it is in use and the UI is optional.

        Raises:
            ConfigError: the address cannot be listened on (in use, not this host's).
        """
        host, _, port = self._listen.rpartition(":")
        try:
            family, kind, proto, _, where = socket.getaddrinfo(
                host.strip("[]") or None, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )[0]
            sock = socket.socket(family, kind, proto)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(where)
                sock.listen(128)
                sock.setblocking(False)
            except BaseException:
                sock.close()
                raise
        except OSError as err:
            reason = getattr(err, "strerror", None) or str(err)
            if self._optional:
                logger.warning(
                    "web UI off: cannot listen on %s (%s); set CMO_UI_LISTEN to another address", self._listen, reason
                )
                return False
            raise ConfigError("CMO_UI_LISTEN", f"cannot listen on {self._listen}: {reason}") from None
        self._socket = sock
        self.port = sock.getsockname()[1]
        return True

    async def run(self) -> None:
        """Serve until `aclose`."""
        if self._socket is None:
            raise RuntimeError("UiServer.run before a successful bind")
        self._started = True
        try:
            await self._server.serve(sockets=[self._socket])
        finally:
            self._finished.set()

    async def aclose(self) -> None:
        """Stop taking connections, let requests in flight finish (briefly); idempotent."""
        self._server.should_exit = True
        if self._started and not self._finished.is_set():
            # uvicorn cancels what is still running after its own grace; this is a last resort.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._finished.wait(), self._grace + 5)
        if self._socket is not None:
            self._socket.close()
