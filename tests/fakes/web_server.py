"""A small web server on a loopback address for the web tool tests: routes answer with a status,
headers and body (or a function of the request); every request is recorded.

    with LocalWeb("127.0.0.2") as web:
        web.route("/", 200, "<h1>hi</h1>", {"Content-Type": "text/html"})
        web.route("/away", 302, "", {"Location": "http://127.0.0.1:9/"})
        ...  web.url("/") ...
        assert web.requests[0].headers["Host"] == "…"

It stands in for the far side of the network only. `tls=(certfile, keyfile)` serves HTTPS and
records the SNI name each handshake asked for in `sni`.
"""

from __future__ import annotations

import contextlib
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Seen:
    path: str
    headers: dict[str, str]


Answer = tuple[int, str | bytes, dict[str, str]]


class LocalWeb:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, tls: tuple[str, str] | None = None):
        self.requests: list[Seen] = []
        self.sni: list[str | None] = []
        self._routes: dict[str, Answer | Callable[[Seen], Answer]] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                seen = Seen(self.path, dict(self.headers.items()))
                outer.requests.append(seen)
                answer = outer._routes.get(self.path.split("?")[0], (404, "not here", {}))
                status, body, headers = answer(seen) if callable(answer) else answer
                data = body.encode() if isinstance(body, str) else body
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(data)  # the client may stop reading at its cap

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.scheme = "http"
        if tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            ctx.sni_callback = lambda sock, name, c: outer.sni.append(name)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.host, self.port = self.server.server_address[:2]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def route(self, path: str, status: int, body: str | bytes = "", headers=None) -> None:
        self._routes[path] = (status, body, dict(headers or {}))

    def route_fn(self, path: str, fn: Callable[[Seen], Answer]) -> None:
        self._routes[path] = fn

    def url(self, path: str = "/", host: str | None = None) -> str:
        return f"{self.scheme}://{host or self.host}:{self.port}{path}"

    def __enter__(self) -> LocalWeb:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


def slow(seconds: float, body: str = "late") -> Callable[[Seen], Answer]:
    """A route that answers only after `seconds`."""

    def answer(seen: Seen) -> Answer:
        time.sleep(seconds)
        return 200, body, {"Content-Type": "text/plain"}

    return answer
