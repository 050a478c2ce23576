"""An HTTP/1.1 client on asyncio streams for the gateway's hot paths: model calls and the
Telegram Bot API's JSON methods.

Why not requests in a worker thread: a gateway keeps hundreds of model calls in flight, and a
thread per call costs memory (its stack and malloc arena) and CPU (every hand-over of the GIL,
and requests' own per-call work was two thirds of a turn's CPU). Here a call in flight is a
coroutine waiting on a socket.

What it does: `POST`/`GET` with a body given as bytes, keep-alive connections pooled per origin
(an idle connection the server closed is dropped before reuse, and a request that finds its
reused connection closed before any answer byte is sent once more on a fresh one), bodies by
Content-Length, chunked or until close, TLS with the CA bundle requests would use
(REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE, else certifi's, else the system's), and proxies —
an explicit one, or HTTPS_PROXY / HTTP_PROXY / ALL_PROXY minus NO_PROXY read once per origin;
`https://` goes through a CONNECT tunnel. No redirects, cookies or compression
(`Accept-Encoding: identity`).

Timeouts are (connect, read): read bounds each wait for bytes, not the whole answer, as in
requests. Errors are ConnectFailed, ReadTimedOut and Disconnected (all TransportError); their
messages never hold the URL, which carries the Bot API token.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any
from urllib.parse import urlsplit

from nanobot.httpanswer import (
    ConnectFailed,
    Disconnected,
    ReadTimedOut,
    Response,
    TransportError,
    read_head,
)
from nanobot.netenv import ca_bundle, environ_proxy, proxy_auth

__all__ = [
    "Client",
    "ConnectFailed",
    "Disconnected",
    "ReadTimedOut",
    "Response",
    "TransportError",
    "ca_bundle",
    "environ_proxy",
    "loop_client",
]

USER_AGENT = "nanobot"


class _Conn:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def usable(self) -> bool:
        r = self.reader
        return not (self.writer.is_closing() or r.at_eof() or r.exception() or len(r._buffer))

    def close(self) -> None:
        # RuntimeError: its event loop has closed; the garbage collector closes the socket.
        with contextlib.suppress(RuntimeError):
            self.writer.close()


class Client:
    """Keep-alive connections for one event loop. `proxy` (a URL) overrides the environment."""

    def __init__(self, *, proxy: str = "", pool: int = 64) -> None:
        self._proxy = proxy
        self._pool_size = pool
        self._idle: dict[tuple, list[_Conn]] = {}
        self._ssl = None

    async def post_json(self, url: str, obj: Any, **options) -> Response:
        """POST obj as JSON (UTF-8); raises ValueError for NaN or infinity, as requests did."""
        data = json.dumps(obj, allow_nan=False, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json", **(options.pop("headers", None) or {})}
        return await self.request("POST", url, data, headers=headers, **options)

    async def request(
        self,
        method: str,
        url: str,
        body: bytes = b"",
        *,
        headers: dict[str, str] | None = None,
        timeout: float | tuple[float, float] = 30.0,
        stream: bool = False,
    ) -> Response:
        """Send one request and read the answer's head (and, unless stream, its body)."""
        connect_timeout, read_timeout = timeout if isinstance(timeout, tuple) else (timeout,) * 2
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("not an http(s) URL")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        proxy = self._proxy or environ_proxy(parts.scheme, parts.hostname, port)
        netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        host = netloc if parts.port is None else f"{netloc}:{port}"
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        extra = ""
        if proxy and parts.scheme == "http":
            path = f"http://{host}{path}"
            extra = proxy_auth(proxy)
        lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"User-Agent: {USER_AGENT}"]
        lines += ["Accept: */*", "Accept-Encoding: identity"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        if any(c in v for v in lines for c in "\r\n"):
            raise ValueError("a header holds a line break")
        head = ("\r\n".join(lines) + extra + "\r\n\r\n").encode("latin-1")
        key = (parts.scheme, parts.hostname, port, proxy)
        for fresh in (False, True):
            conn = None if fresh else self._reuse(key)
            if conn is None:
                fresh = True
                conn = await self._open(key, connect_timeout)
            resp = Response(self, key, conn, 0, {})
            resp._read_timeout = read_timeout
            try:
                conn.writer.write(head + body)
                if conn.writer.transport.get_write_buffer_size():  # a server not reading
                    await resp._within(conn.writer.drain())  # must not stall us unbounded
                first = await resp._more()
            except (ReadTimedOut, asyncio.CancelledError):  # the call ended; the answer may come
                conn.close()
                raise
            except (TransportError, OSError) as e:
                conn.close()
                if fresh:
                    raise Disconnected(f"no answer ({type(e).__name__})") from None
                continue  # a reused connection the server had closed: once more, fresh
            if first:
                break
            conn.close()
            if fresh:
                raise Disconnected("the server closed the connection without an answer")
        resp._buf = first
        try:
            resp.status, resp.headers = await read_head(resp)
        except BaseException:
            resp.close()  # a head cut short or stalled: the connection is in an unknown state
            raise
        if not stream:
            await resp.read()
        return resp

    def close(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()

    def _reuse(self, key: tuple) -> _Conn | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if conn.usable():
                return conn
            conn.close()
        return None

    def _release(self, key: tuple, conn: _Conn) -> None:
        idle = self._idle.setdefault(key, [])
        if len(idle) < self._pool_size and conn.usable():
            idle.append(conn)
        else:
            conn.close()

    async def _open(self, key: tuple, timeout: float) -> _Conn:
        scheme, host, port, proxy = key
        tls = self._tls() if scheme == "https" else None
        try:
            async with asyncio.timeout(timeout):
                if not proxy:
                    reader, writer = await asyncio.open_connection(
                        host, port, ssl=tls, server_hostname=host if tls else None
                    )
                    return _Conn(reader, writer)
                p = urlsplit(proxy)
                p_tls = self._tls() if p.scheme == "https" else None
                reader, writer = await asyncio.open_connection(
                    p.hostname, p.port or (443 if p_tls else 80), ssl=p_tls
                )
                conn = _Conn(reader, writer)
                if tls is not None:
                    try:
                        await _tunnel(conn, host, port, proxy_auth(proxy))
                        await writer.start_tls(tls, server_hostname=host)
                    except BaseException:  # refused, TLS failed, or the connect timeout hit
                        conn.close()
                        raise
                return conn
        except TimeoutError:
            raise ConnectFailed(f"no connection within {timeout:g} s") from None
        except (OSError, ValueError) as e:  # refused, unresolvable, TLS failure, a bad proxy URL
            raise ConnectFailed(f"could not connect ({type(e).__name__})") from None

    def _tls(self):
        if self._ssl is None:
            import ssl

            self._ssl = ssl.create_default_context(cafile=ca_bundle())
        return self._ssl


_by_loop: dict[asyncio.AbstractEventLoop, Client] = {}


def loop_client(pool: int = 64) -> Client:
    """The running event loop's shared Client (made on first use with `pool` idle connections
    per origin). Clients of loops that have closed are dropped; the garbage collector closes
    their sockets."""
    loop = asyncio.get_running_loop()
    found = _by_loop.get(loop)
    if found is None:
        for closed in [other for other in _by_loop if other.is_closed()]:
            del _by_loop[closed]
        found = _by_loop[loop] = Client(pool=pool)
    return found


async def _tunnel(conn: _Conn, host: str, port: int, auth: str) -> None:
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    conn.writer.write(f"CONNECT {target} HTTP/1.1\r\nHost: {target}{auth}\r\n\r\n".encode())
    status = await conn.reader.readline()
    while (await conn.reader.readline()).strip():
        pass
    if status.split(b" ", 2)[1:2] != [b"200"]:
        conn.close()
        code = status.split(b" ", 2)[1:2] or [b"?"]
        raise ConnectFailed(f"the proxy refused the tunnel ({code[0].decode('latin-1')})")
