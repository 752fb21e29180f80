"""The local HTTP server W1H's activity calls: a stdlib server on a thread of the bench process.

It answers `GET /square-sum?n=N` with `{"total": sum of i*i for i < N}` (W1's computation), over
HTTP/1.1 on 127.0.0.1, so the numbers include a real request but no network beyond loopback.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

__all__ = ["local_http_server"]


class _SquareSum(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

    def do_GET(self) -> None:
        n = int(parse_qs(urlparse(self.path).query).get("n", ["100"])[0])
        body = json.dumps({"total": sum(i * i for i in range(n))}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def local_http_server() -> Iterator[str]:
    """Serve on a free loopback port until the context exits; yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SquareSum)
    thread = threading.Thread(target=server.serve_forever, name="bench-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
