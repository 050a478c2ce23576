"""The answer side of nanobot.ahttp: the transport errors, the status line and headers, and
the body read whole or as it arrives (Content-Length, chunked, or until close), parsed from
what each read of the socket brings rather than a wait per line."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nanobot.ahttp import Client, _Conn

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


async def read_head(resp: Response) -> tuple[int, dict[str, str]]:
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
