"""The local HTTP server: GET /healthz and the token-protected OpenAI-compatible chat API
(POST /v1/chat/completions, streamed with "stream": true; GET /v1/models)."""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import re
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import urlsplit

from nanobot import workers
from nanobot.apichat import ChatEndpoints, Refusal, bearer, error_body
from nanobot.channels.request import RequestChannel
from nanobot.config.schema import GatewayConfig
from nanobot.deadlines import Deadline, Deadlines
from nanobot.errors import NanobotError

log = logging.getLogger("nanobot.api")

HEALTH_PATH = "/healthz"
CHAT_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"
TURN_TIMEOUT = 300.0
CONNECTIONS = 64  # connections served at once; more wait for a free thread
# Path -> method -> handler method name: the whole routing.
_ROUTES = {
    HEALTH_PATH: {"GET": "_health"},
    CHAT_PATH: {"POST": "_chat"},
    MODELS_PATH: {"GET": "_models"},
}
_LENGTH_RE = re.compile(r"[0-9]{1,15}")


def is_loopback(host: str) -> bool:
    """True for "localhost" and loopback addresses (127.0.0.0/8, ::1, ::ffff:127.x); else False."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return False
    return (getattr(ip, "ipv4_mapped", None) or ip).is_loopback


class LocalAPI:
    """Serves GET /healthz and POST /v1/chat/completions on cfg.host:cfg.port from a daemon thread.

    Each chat request is one message on `channel` (the route: rate limit per `user`, audit,
    durable inbox), awaited on `loop` (running in another thread than the API's); at most
    `connections` are served at once, each by a thread of a pool that keeps its threads;
    health() -> {"status", "channels"} must hold no secrets. The chat API needs cfg.token
    (Authorization: Bearer …); without one it answers 403.
    """

    def __init__(
        self,
        cfg: GatewayConfig,
        loop: asyncio.AbstractEventLoop,
        channel: RequestChannel,
        health: Callable[[], dict],
        turn_timeout: float = TURN_TIMEOUT,
        connections: int = CONNECTIONS,
    ) -> None:
        self.cfg, self.loop, self.channel, self.health = cfg, loop, channel, health
        self.turn_timeout, self.connections = turn_timeout, connections
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (cfg.port, or the one the OS chose for port 0); valid after start()."""
        if self._server is None:
            raise RuntimeError("LocalAPI.port read before start()")
        return self._server.server_address[1]

    def start(self) -> None:
        """Bind and serve in a daemon thread. Raises NanobotError on an unsafe or failed bind."""
        host, port = self.cfg.host, self.cfg.port
        if not is_loopback(host):
            if not self.cfg.token:
                raise NanobotError(
                    f"refusing to bind the local API to {host or '0.0.0.0'} without gateway.token"
                    ' — set gateway.token (e.g. "${NANOBOT_GATEWAY_TOKEN}") or bind 127.0.0.1'
                )
            log.warning("local API on %s is reachable from other hosts; firewall it", host)
        try:
            family, address = _bind_address(host, port)
            self._server = _Server(address, family, self)
        except OSError as e:
            raise NanobotError(
                f"cannot bind the local API to {host}:{port} ({e.strerror or e}) — "
                "free the port or change gateway.port / gateway.host"
            ) from e
        # poll_interval 0.1 s: how long stop() may wait for the serving loop.
        serve = self._server.serve_forever
        self._thread = threading.Thread(target=serve, args=(0.1,), name="nanobot-http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting connections and close the socket; requests in flight may still finish."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


def _bind_address(host: str, port: int) -> tuple[socket.AddressFamily, tuple]:
    if host.strip().lower() == "localhost":
        return socket.AF_INET, ("127.0.0.1", port)  # clients that say 127.0.0.1 reach it too
    name = host.strip("[]") or "0.0.0.0"
    family, _, _, _, sockaddr = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)[0]
    return family, sockaddr


class _Server(HTTPServer):
    """Each connection is served by a thread of the "api" pool, which keeps its threads: one
    new thread per request would make the C allocator's per-thread arenas grow for ever."""

    def __init__(self, address: tuple, family: socket.AddressFamily, api: LocalAPI) -> None:
        self.address_family = family
        self.api = api
        self.deadlines = Deadlines("nanobot-http-deadlines")  # one thread for every read deadline
        self.pool = workers.pool("api", api.connections)
        super().__init__(address, _Handler)

    def process_request(self, request, client_address) -> None:
        self.pool.submit(self._serve, request, client_address)

    def _serve(self, request, client_address) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001 - boundary: one broken connection, logged, not the server
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would do a reverse DNS lookup (getfqdn) nobody here needs.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def handle_error(self, request, client_address) -> None:
        log.debug("local API: connection from %s ended in error", client_address[0], exc_info=True)


class _Handler(ChatEndpoints, BaseHTTPRequestHandler):
    """One request per connection (HTTP/1.0: the connection closes after the response).

    A deadline timer bounds each read phase (headers, then body) to gateway.headerTimeout in
    total, so a client trickling bytes cannot hold a thread; the socket timeout bounds each read.
    """

    server_version = "nanobot"
    sys_version = ""
    disable_nagle_algorithm = True  # the body follows the headers in a second write
    server: _Server

    def version_string(self) -> str:
        return "nanobot"

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        log.debug("local API %s: %s", self.client_address[0], format % args)

    # -- connection lifecycle and the read deadline --

    def setup(self) -> None:
        self.timeout = self.server.api.cfg.header_timeout
        self._lock = threading.Lock()
        self._timer: Deadline | None = None
        self._expired = False
        self._unread_body = False
        super().setup()
        self._arm()

    def parse_request(self) -> bool:
        ok = super().parse_request()
        self._disarm()
        return ok and not self._expired

    def finish(self) -> None:
        self._disarm()
        super().finish()
        if self._unread_body and not self._expired:
            self._linger()

    def _arm(self) -> None:
        with self._lock:  # held while arming: _expire cannot look before _timer is set
            self._timer = self.server.deadlines.arm(self.timeout, self._expire)

    def _disarm(self) -> None:
        with self._lock:
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    def _expire(self, timer: Deadline) -> None:
        with self._lock:
            if self._timer is not timer:
                return  # disarmed while this timer was firing
            self._timer, self._expired = None, True
        client = self.client_address[0]
        log.info("local API: cut off %s (no complete request in %.1f s)", client, self.timeout)
        self._audit(408, "rejected")
        try:
            self.connection.shutdown(socket.SHUT_RDWR)  # wakes the blocked read with EOF
        except OSError:
            log.debug("local API: shutdown of a timed-out connection failed", exc_info=True)

    def _linger(self) -> None:
        # Closing with unread bytes resets the connection, which can destroy the response
        # before the client reads it: drain the refused body for up to the header timeout.
        deadline = time.monotonic() + self.timeout
        try:
            self.connection.shutdown(socket.SHUT_WR)
            while (left := deadline - time.monotonic()) > 0:
                self.connection.settimeout(left)
                if not self.connection.recv(65536):
                    break
        except OSError:
            log.debug("local API: linger ended early", exc_info=True)

    # -- routing and responses --

    def _dispatch(self) -> None:
        methods = _ROUTES.get(urlsplit(self.path).path)
        length = self.headers.get("Content-Length", "").strip()
        self._unread_body = length not in ("", "0") or "Transfer-Encoding" in self.headers
        try:
            if methods is None:
                raise Refusal(404, f"no such endpoint; use POST {CHAT_PATH} or GET {HEALTH_PATH}")
            name = methods.get(self.command)
            if name is None:
                allow = ", ".join(methods)
                raise Refusal(405, f"use {allow} for this endpoint", headers=[("Allow", allow)])
            getattr(self, name)()
        except Refusal as r:
            self._respond(r.status, error_body(r.status, r.message), r.decision, r.headers)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _dispatch

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (bad request line, long headers, unknown method) as JSON."""
        phrase = self.responses.get(code, ("Error",))[0]
        self._respond(code, error_body(code, phrase), "rejected")

    def _respond(self, status: int, payload: dict, decision: str, headers=()) -> None:
        if self._expired:
            return  # the deadline already closed the connection and audited it
        self._audit(status, decision)  # first, so a client holding the answer finds the record
        body = json.dumps(payload).encode()
        self.close_connection = True
        self.send_response(status)
        for key, value in [("Content-Type", "application/json"), *headers]:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _audit(self, status: int, decision: str) -> None:
        from nanobot.security.audit import get_audit

        path = urlsplit(getattr(self, "path", "") or "").path[:200]
        client = self.client_address[0]
        get_audit().record(
            "http_request", path=path, status=status, client=client, decision=decision
        )

    # -- endpoints --

    def _health(self) -> None:
        try:
            state = self.server.api.health()
        except Exception:  # boundary: a broken probe must still answer
            log.exception("local API: health() failed")
            raise Refusal(500, "health check failed; see the gateway log", "allowed") from None
        self._respond(200, state, "allowed")

    def _authorize(self, token: str) -> None:
        given = bearer(self.headers.get_all("Authorization") or [])
        if token and given is not None and hmac.compare_digest(given, token.encode()):
            return
        reason = "gateway.token not set" if not token else "wrong token" if given else "no token"
        log.warning("Access denied: local API request from %s (%s)", self.client_address[0], reason)
        if not token:
            fix = 'set gateway.token to use the API (e.g. "${NANOBOT_GATEWAY_TOKEN}")'
            raise Refusal(403, fix, "denied")
        challenge = [("WWW-Authenticate", "Bearer")]
        raise Refusal(401, "send Authorization: Bearer <gateway.token>", "denied", challenge)

    def _read_json(self) -> dict:
        values = self.headers.get_all("Content-Length") or []
        if not values or "Transfer-Encoding" in self.headers:
            raise Refusal(411, "send the body with a Content-Length header (no chunked encoding)")
        if len(values) > 1 or not _LENGTH_RE.fullmatch(values[0].strip()):
            raise Refusal(400, "invalid Content-Length header")
        length, limit = int(values[0]), self.server.api.cfg.max_body_bytes
        if length > limit:
            raise Refusal(413, f"the body is over {limit} bytes (gateway.maxBodyBytes)")
        self._arm()
        try:
            raw = self.rfile.read(length)
        finally:
            self._disarm()
        self._unread_body = False
        if len(raw) != length:
            raise Refusal(400, "the body is shorter than its Content-Length")
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            raise Refusal(400, "the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise Refusal(400, "the body must be a JSON object")
        return body
