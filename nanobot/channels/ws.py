"""A small RFC 6455 WebSocket client on asyncio streams (standard library only).

What it does: the opening handshake with the Sec-WebSocket-Accept check, masked client frames,
text and binary messages reassembled from fragments, automatic pong to a ping, the closing
handshake, and limits on the size of one frame and of one message. What it does not: extensions
(permessage-deflate is never offered), subprotocols, proxies.

One task reads (recv); any number of tasks may send. recv() raises ConnectionClosed once the
connection is over, with the peer's close code when it sent one.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import ssl
import struct
import time
from urllib.parse import urlsplit

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_HEADER_BYTES = 16 * 1024

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_DATA_OPS = (OP_TEXT, OP_BINARY)
_CONTROL_OPS = (OP_CLOSE, OP_PING, OP_PONG)

CLOSE_NORMAL = 1000
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_INVALID_DATA = 1007
CLOSE_TOO_BIG = 1009
CLOSE_NO_STATUS = 1005
CLOSE_ABNORMAL = 1006


class WebSocketError(Exception):
    """Base class; the message never holds a secret (URLs are shown without query)."""


class HandshakeError(WebSocketError):
    """The server did not accept the WebSocket upgrade; status is its HTTP status (0 if none)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class ConnectionClosed(WebSocketError):
    """The connection is closed; code/reason come from the peer's close frame (1006: none)."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"WebSocket closed ({code}{': ' + reason if reason else ''})")
        self.code = code
        self.reason = reason


def accept_key(key: str) -> str:
    """The Sec-WebSocket-Accept value a server must answer to Sec-WebSocket-Key `key`."""
    return base64.b64encode(hashlib.sha1((key + GUID).encode("ascii")).digest()).decode("ascii")


def encode_frame(
    opcode: int, payload: bytes, *, fin: bool = True, mask: bytes | None = None
) -> bytes:
    """One frame; client frames pass a 4-byte mask (RFC 6455 §5.3), server frames none."""
    head = bytearray([(0x80 if fin else 0) | opcode])
    bit = 0x80 if mask is not None else 0
    n = len(payload)
    if n < 126:
        head.append(bit | n)
    elif n < 1 << 16:
        head.append(bit | 126)
        head += struct.pack("!H", n)
    else:
        head.append(bit | 127)
        head += struct.pack("!Q", n)
    if mask is None:
        return bytes(head) + payload
    return bytes(head) + mask + _xor(payload, mask)


def _xor(data: bytes, mask: bytes) -> bytes:
    if not data:
        return b""
    key = int.from_bytes((mask * (len(data) // 4 + 1))[: len(data)], "big")
    return (int.from_bytes(data, "big") ^ key).to_bytes(len(data), "big")


class WebSocket:
    """A connected client. Create with `await WebSocket.connect(url)`."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        max_frame: int,
        max_message: int,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self.max_frame = max_frame
        self.max_message = max_message
        self._send_lock = asyncio.Lock()
        self._close_sent = False
        self.closed: ConnectionClosed | None = None
        self._closed_event = asyncio.Event()
        self._reading = False  # a task is inside recv(): close() must not read as well
        self.last_received = time.monotonic()

    # ---- opening ---------------------------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        timeout: float = 10.0,
        max_frame: int = 1 << 20,
        max_message: int = 4 << 20,
        headers: dict[str, str] | None = None,
    ) -> WebSocket:
        """Open the TCP (or TLS for wss://) connection and do the opening handshake.

        Raises HandshakeError (bad URL, refused upgrade, wrong Sec-WebSocket-Accept) or OSError
        (unreachable), TimeoutError after `timeout` seconds.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise HandshakeError(f"not a ws:// or wss:// URL: {parts.scheme}://{parts.hostname}")
        secure = parts.scheme == "wss"
        port = parts.port or (443 if secure else 80)
        host = parts.hostname
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        ctx = ssl.create_default_context() if secure else None
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=ctx, limit=max_frame + 64), timeout
        )
        try:
            await asyncio.wait_for(
                cls._handshake(reader, writer, host, port, target, headers or {}), timeout
            )
        except BaseException:
            writer.close()
            raise
        return cls(reader, writer, max_frame=max_frame, max_message=max_message)

    @staticmethod
    async def _handshake(reader, writer, host, port, target, headers) -> None:
        key = base64.b64encode(os.urandom(16)).decode("ascii")
        host_header = f"[{host}]" if ":" in host else host
        lines = [
            f"GET {target} HTTP/1.1",
            f"Host: {host_header}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        await writer.drain()
        try:
            raw = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise HandshakeError("the server's handshake answer is too long") from None
        except asyncio.IncompleteReadError:
            raise HandshakeError("the server closed the connection during the handshake") from None
        if len(raw) > MAX_HEADER_BYTES:
            raise HandshakeError("the server's handshake answer is too long")
        status_line, *header_lines = raw.decode("latin-1").split("\r\n")
        fields = status_line.split(" ", 2)
        status = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else 0
        if status != 101:
            raise HandshakeError(f"the server refused the WebSocket upgrade: {status_line}", status)
        got: dict[str, str] = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if sep:
                got[name.strip().lower()] = value.strip()
        if got.get("upgrade", "").lower() != "websocket":
            raise HandshakeError("the server's answer lacks 'Upgrade: websocket'", status)
        if "upgrade" not in got.get("connection", "").lower():
            raise HandshakeError("the server's answer lacks 'Connection: Upgrade'", status)
        if got.get("sec-websocket-accept") != accept_key(key):
            raise HandshakeError("wrong Sec-WebSocket-Accept: not a WebSocket server", status)
        if got.get("sec-websocket-extensions"):
            raise HandshakeError("the server chose an extension nobody asked for", status)

    # ---- sending ---------------------------------------------------------------------------

    async def _send_frame(self, opcode: int, payload: bytes) -> None:
        if self.closed is not None or (self._close_sent and opcode != OP_CLOSE):
            raise self.closed or ConnectionClosed(CLOSE_ABNORMAL, "closing")
        frame = encode_frame(opcode, payload, mask=os.urandom(4))
        async with self._send_lock:
            try:
                self._writer.write(frame)
                await self._writer.drain()
            except (ConnectionError, RuntimeError) as e:
                self._abort(CLOSE_ABNORMAL, f"write failed: {e}")
                raise self.closed from None

    async def send_text(self, text: str) -> None:
        await self._send_frame(OP_TEXT, text.encode("utf-8"))

    async def send_bytes(self, data: bytes) -> None:
        await self._send_frame(OP_BINARY, data)

    async def ping(self, data: bytes = b"") -> None:
        await self._send_frame(OP_PING, data[:125])

    # ---- receiving -------------------------------------------------------------------------

    async def recv(self) -> str | bytes:
        """The next whole message (str for text, bytes for binary).

        Pings are answered and pongs noted (last_received) on the way. Raises ConnectionClosed
        when the peer closes, the connection drops, or the peer breaks the protocol (the
        connection is then closed with 1002, 1007 or 1009).
        """
        if self._reading:
            raise RuntimeError("recv() is already running in another task")
        self._reading = True
        try:
            return await self._recv_message()
        finally:
            self._reading = False

    async def _recv_message(self) -> str | bytes:
        opcode: int | None = None
        chunks: list[bytes] = []
        size = 0
        while True:
            fin, op, payload = await self._read_frame()
            if op in _CONTROL_OPS:
                await self._control(op, payload)
                continue
            if op == OP_CONT:
                if opcode is None:
                    await self._fail(CLOSE_PROTOCOL_ERROR, "continuation without a first frame")
            elif opcode is not None:
                await self._fail(CLOSE_PROTOCOL_ERROR, "new message inside a fragmented one")
            else:
                opcode = op
            size += len(payload)
            if size > self.max_message:
                await self._fail(CLOSE_TOO_BIG, f"message larger than {self.max_message} bytes")
            chunks.append(payload)
            if fin:
                data = b"".join(chunks)
                if opcode == OP_BINARY:
                    return data
                try:
                    return data.decode("utf-8")
                except UnicodeDecodeError:
                    await self._fail(CLOSE_INVALID_DATA, "text message is not valid UTF-8")

    async def _read_frame(self) -> tuple[bool, int, bytes]:
        if self.closed is not None:
            raise self.closed
        try:
            b1, b2 = await self._reader.readexactly(2)
            if b1 & 0x70:
                await self._fail(CLOSE_PROTOCOL_ERROR, "reserved bits set (no extension agreed)")
            fin, op = bool(b1 & 0x80), b1 & 0x0F
            if op not in (OP_CONT, *_DATA_OPS, *_CONTROL_OPS):
                await self._fail(CLOSE_PROTOCOL_ERROR, f"unknown opcode {op}")
            if b2 & 0x80:
                await self._fail(CLOSE_PROTOCOL_ERROR, "the server masked a frame")
            n = b2 & 0x7F
            if op in _CONTROL_OPS and (n > 125 or not fin):
                await self._fail(CLOSE_PROTOCOL_ERROR, "control frame too long or fragmented")
            if n == 126:
                (n,) = struct.unpack("!H", await self._reader.readexactly(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", await self._reader.readexactly(8))
            if n > self.max_frame:
                await self._fail(CLOSE_TOO_BIG, f"frame larger than {self.max_frame} bytes")
            payload = await self._reader.readexactly(n) if n else b""
        except (asyncio.IncompleteReadError, ConnectionError) as e:
            self._abort(CLOSE_ABNORMAL, f"connection lost ({type(e).__name__})")
            raise self.closed from None
        self.last_received = time.monotonic()
        return fin, op, payload

    async def _control(self, op: int, payload: bytes) -> None:
        if op == OP_PING:
            await self._send_frame(OP_PONG, payload)
        elif op == OP_CLOSE:
            code, reason = CLOSE_NO_STATUS, ""
            if len(payload) == 1:
                await self._fail(CLOSE_PROTOCOL_ERROR, "close frame with a 1-byte payload")
            if len(payload) >= 2:
                (code,) = struct.unpack("!H", payload[:2])
                reason = payload[2:].decode("utf-8", "replace")
            if not self._close_sent:
                self._close_sent = True
                echo = struct.pack("!H", code) if code != CLOSE_NO_STATUS else b""
                with contextlib.suppress(ConnectionClosed):
                    await self._send_frame(OP_CLOSE, echo)
            self._abort(code, reason)
            raise self.closed

    async def _fail(self, code: int, reason: str) -> None:
        """The peer broke the protocol: close with code and raise ConnectionClosed."""
        await self.close(code, reason, wait=0)
        raise ConnectionClosed(code, reason)

    # ---- closing ---------------------------------------------------------------------------

    async def close(self, code: int = CLOSE_NORMAL, reason: str = "", wait: float = 2.0) -> None:
        """Send a close frame, wait up to `wait` s for the peer's, then drop the connection."""
        if self.closed is not None:
            return
        if not self._close_sent:
            self._close_sent = True
            body = struct.pack("!H", code) + reason.encode("utf-8")[:123]
            try:
                await self._send_frame(OP_CLOSE, body)
            except ConnectionClosed:
                return
        if wait > 0 and self._reading:
            # the reading task sees the peer's close frame and finishes the close
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closed_event.wait(), wait)
        elif wait > 0:
            try:
                async with asyncio.timeout(wait):
                    while True:
                        _, op, payload = await self._read_frame()
                        if op == OP_CLOSE:
                            break
            except (TimeoutError, ConnectionClosed):
                pass
        self._abort(code, reason)

    def _abort(self, code: int, reason: str) -> None:
        if self.closed is None:
            self.closed = ConnectionClosed(code, reason)
        self._closed_event.set()
        self._writer.close()
