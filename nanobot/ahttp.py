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
import base64
import contextlib
import functools
import ipaddress
import json
import os
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import unquote, urlsplit

USER_AGENT = "nanobot"
_READ = 64 * 1024
_MAX_HEADERS = 100
_MAX_HEAD = 64 * 1024
_MAX_LINE = 8192  # a chunk-size or trailer line


class TransportError(Exception):
    """No complete HTTP answer (the message names what failed, never the URL)."""


class ConnectFailed(TransportError):
    """The connection (or the proxy tunnel, or TLS) could not be set up: nothing was sent."""


class ReadTimedOut(TransportError):
    """No bytes arrived within the read timeout."""


class Disconnected(TransportError):
    """The connection closed or broke before the answer was complete, or the answer is not HTTP."""


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


class Response:
    """Status, lower-cased headers and the body, read whole (`read`) or as it arrives
    (`chunks`). The connection goes back to the pool once the body has been read to its end."""

    def __init__(self, client: Client, key: tuple, conn: _Conn, status: int, headers: dict):
        self.status = status
        self.headers = headers
        self.body = b""
        self._client = client
        self._key = key
        self._conn: _Conn | None = conn
        self._read_timeout = 0.0
        self._buf = b""  # bytes read beyond the head, not yet consumed

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body as JSON (raises ValueError when it is not)."""
        return json.loads(self.body)

    async def read(self) -> bytes:
        """The whole body (read once; later calls return it again)."""
        if self._conn is not None:
            self.body = b"".join([piece async for piece in self.chunks()])
        return self.body

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body's bytes as they arrive; ends at the end of the body."""
        conn = self._conn
        if conn is None:
            return
        reusable = self.headers.get("connection", "").lower() != "close"
        length = self.headers.get("content-length")
        try:
            if self.status in (204, 304) or 100 <= self.status < 200:
                pass
            elif "chunked" in self.headers.get("transfer-encoding", "").lower():
                async for piece in self._dechunk():
                    yield piece
            elif length is not None:
                async for piece in self._sized(_length(length)):
                    yield piece
            else:
                reusable = False
                piece, self._buf = self._buf, b""
                while piece:
                    yield piece
                    piece = await self._more()
        except BaseException:
            self.close()
            raise
        self._conn = None
        if reusable and not self._buf:
            self._client._release(self._key, conn)
        else:  # closed by the server, or bytes beyond the answer: not reusable
            conn.close()

    def close(self) -> None:
        """Drop the connection unless the body was read to its end (then it is pooled)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def _within(self, aw):
        try:
            async with asyncio.timeout(self._read_timeout):
                return await aw
        except TimeoutError:
            raise ReadTimedOut(f"no data for {self._read_timeout:g} s") from None
        except asyncio.IncompleteReadError:
            raise Disconnected("the connection closed mid-answer") from None
        except (OSError, ValueError, asyncio.LimitOverrunError) as e:  # reset; a line too long
            raise Disconnected(f"the connection broke mid-answer ({type(e).__name__})") from None

    async def _more(self) -> bytes:
        """The next bytes the connection has (b"" once the server closed it): one wait."""
        return await self._within(self._conn.reader.read(_READ))

    async def _need(self) -> bytes:
        data = await self._more()
        if not data:
            raise Disconnected("the connection closed mid-answer")
        return data

    async def _sized(self, left: int) -> AsyncIterator[bytes]:
        buf, self._buf = self._buf, b""
        while left > 0:
            if not buf:
                buf = await self._need()
            piece, buf = buf[:left], buf[left:]
            left -= len(piece)
            yield piece
        self._buf = buf

    async def _line(self, buf: bytes) -> tuple[bytes, bytes]:
        """The next line of a chunked body's framing and what follows it."""
        while (end := buf.find(b"\n")) < 0:
            if len(buf) > _MAX_LINE:
                raise Disconnected("malformed chunked body")
            buf += await self._need()
        return buf[:end].strip(), buf[end + 1 :]

    async def _dechunk(self) -> AsyncIterator[bytes]:
        """A chunked body's data, parsed from what each read brings (not a wait per line)."""
        buf, self._buf = self._buf, b""
        while True:
            line, buf = await self._line(buf)
            size = _length(line.split(b";", 1)[0].strip().decode("latin-1"), 16)
            if size == 0:
                break
            self._buf = buf
            async for piece in self._sized(size):
                yield piece
            line, buf = await self._line(self._buf)
            if line:
                raise Disconnected("malformed chunked body")
        while True:  # trailer fields, up to the blank line
            line, buf = await self._line(buf)
            if not line:
                break
        self._buf = buf


def _length(text: str, base: int = 10) -> int:
    try:
        value = int(text, base)
    except ValueError:
        raise Disconnected("malformed body length") from None
    if value < 0:
        raise Disconnected("malformed body length")
    return value


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
            extra = _proxy_auth(proxy)
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
            resp.status, resp.headers = await _head(resp)
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
                        await _tunnel(conn, host, port, _proxy_auth(proxy))
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


async def _head(resp: Response) -> tuple[int, dict[str, str]]:
    """The status and headers (parsed from what each read brings), skipping interim 1xx
    answers; the bytes after the head stay in resp._buf."""
    while True:
        buf = resp._buf
        while (end := _head_end(buf)) < 0:
            if not b"HTTP/1."[: len(buf)] == buf[:7]:
                raise Disconnected("the answer is not HTTP/1.x")
            if len(buf) > _MAX_HEAD:
                raise Disconnected("the answer's head is too large")
            buf += await resp._need()
        if end > _MAX_HEAD:
            raise Disconnected("the answer's head is too large")
        head = buf[:end]
        resp._buf = buf[end + (4 if buf[end : end + 4] == b"\r\n\r\n" else 2) :]
        status, *lines = head.decode("latin-1").split("\n")
        version, _, rest = status.partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise Disconnected("the answer is not HTTP/1.x")
        if len(lines) > _MAX_HEADERS:
            raise Disconnected("too many header fields")
        headers: dict[str, str] = {}
        for raw in lines:
            name, _, value = raw.partition(":")
            headers[name.strip().lower()] = value.strip()
        if version == "HTTP/1.0" and headers.get("connection", "").lower() != "keep-alive":
            headers["connection"] = "close"
        if int(code) >= 200 or int(code) == 101:
            return int(code), headers


def _head_end(buf: bytes) -> int:
    """Where the blank line ending a head starts (CRLF CRLF, or bare LF LF), or -1."""
    crlf, lf = buf.find(b"\r\n\r\n"), buf.find(b"\n\n")
    if crlf < 0 or (0 <= lf < crlf):
        return lf
    return crlf


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


def _proxy_auth(proxy: str) -> str:
    p = urlsplit(proxy)
    if not p.username:
        return ""
    pair = f"{unquote(p.username)}:{unquote(p.password or '')}".encode()
    return f"\r\nProxy-Authorization: Basic {base64.b64encode(pair).decode()}"


def ca_bundle() -> str | None:
    """The CA file requests would use: the environment's, else certifi's, else None (the
    system's store)."""
    named = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if named:
        return named
    try:
        import certifi
    except ImportError:
        return None
    return certifi.where()


@functools.lru_cache(maxsize=64)
def environ_proxy(scheme: str, host: str, port: int) -> str:
    """The proxy URL the environment names for this origin ("" for none or NO_PROXY)."""
    proxy = _env(f"{scheme}_proxy") or _env("all_proxy")
    if not proxy or _bypassed(host, port, _env("no_proxy")):
        return ""
    return proxy if "://" in proxy else f"http://{proxy}"


def _env(name: str) -> str:
    """A proxy variable, the lower-case spelling first (set, even empty, it wins: as in urllib)."""
    value = os.environ.get(name)
    return value if value is not None else os.environ.get(name.upper(), "")


def _bypassed(host: str, port: int, no_proxy: str) -> bool:
    host = host.lower().strip("[]")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for entry in (e.strip().lower() for e in no_proxy.replace(" ", ",").split(",")):
        if not entry:
            continue
        if entry == "*":
            return True
        name, _, only_port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
        if only_port and only_port != str(port):
            continue
        if address is not None:
            try:
                if address in ipaddress.ip_network(name.strip("[]"), strict=False):
                    return True
            except ValueError:
                pass
            continue
        name = name.lstrip(".")
        if host == name or host.endswith("." + name):
            return True
    return False
