"""The standard-library WebSocket client against a tiny real server on 127.0.0.1.

The server is written here from RFC 6455 directly (not with nanobot.channels.ws), so a frame
format mistake in the client cannot be mirrored by the server.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct

import pytest

from nanobot.channels.ws import ConnectionClosed, HandshakeError, WebSocket

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def server_frame(opcode: int, payload: bytes, fin: bool = True, masked: bool = False) -> bytes:
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    m = 0x80 if masked else 0
    if n < 126:
        head += bytes([m | n])
    elif n < 65536:
        head += bytes([m | 126]) + struct.pack("!H", n)
    else:
        head += bytes([m | 127]) + struct.pack("!Q", n)
    if masked:
        key = b"\x01\x02\x03\x04"
        return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + payload


async def read_client_frame(reader) -> tuple[int, bytes, bool]:
    """(opcode, unmasked payload, was masked) of the next client frame."""
    b1, b2 = await reader.readexactly(2)
    n = b2 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", await reader.readexactly(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", await reader.readexactly(8))
    masked = bool(b2 & 0x80)
    key = await reader.readexactly(4) if masked else b"\0\0\0\0"
    data = await reader.readexactly(n)
    return b1 & 0x0F, bytes(b ^ key[i % 4] for i, b in enumerate(data)), masked


class TinyServer:
    """Accepts one client, answers the handshake (or not), then runs script(reader, writer)."""

    def __init__(
        self, script, *, accept: str | None = None, status: str = "101 Switching Protocols"
    ):
        self.script = script
        self.accept = accept
        self.status = status
        self.request = b""
        self.done = asyncio.Event()
        self.error: BaseException | None = None

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.url = f"ws://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/path"
        return self

    async def __aexit__(self, *exc):
        self.server.close()
        await self.server.wait_closed()
        if self.error:
            raise self.error

    async def _handle(self, reader, writer):
        try:
            self.request = await reader.readuntil(b"\r\n\r\n")
            key = next(
                line.split(b":", 1)[1].strip().decode()
                for line in self.request.split(b"\r\n")
                if line.lower().startswith(b"sec-websocket-key:")
            )
            accept = (
                self.accept
                or base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
            )
            writer.write(
                f"HTTP/1.1 {self.status}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Accept: {accept}\r\n\r\n".encode()
            )
            await writer.drain()
            if self.status.startswith("101"):
                await self.script(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except BaseException as e:  # noqa: BLE001 — surfaced in __aexit__
            self.error = e
        finally:
            writer.close()
            self.done.set()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 10))


def test_handshake_then_masked_text_round_trip_and_close():
    seen = {}

    async def script(reader, writer):
        op, data, masked = await read_client_frame(reader)
        seen["first"] = (op, data, masked)
        writer.write(server_frame(0x1, b"echo: " + data))
        op, data, masked = await read_client_frame(reader)
        seen["close"] = (op, data, masked)
        writer.write(server_frame(0x8, data[:2]))
        await writer.drain()

    async def main():
        async with TinyServer(script) as srv:
            ws = await WebSocket.connect(srv.url)
            await ws.send_text("hällo")
            assert await ws.recv() == "echo: hällo"
            await ws.close()
            assert ws.closed.code == 1000
            await srv.done.wait()
            return srv.request

    request = run(main())
    assert b"GET /path HTTP/1.1" in request and b"Sec-WebSocket-Version: 13" in request
    assert seen["first"] == (0x1, "hällo".encode(), True)  # clients always mask
    assert seen["close"][0] == 0x8 and seen["close"][1][:2] == struct.pack("!H", 1000)


def test_wrong_accept_key_is_refused():
    async def main():
        async with TinyServer(lambda r, w: asyncio.sleep(0), accept="d3Jvbmc=") as srv:
            with pytest.raises(HandshakeError, match="Sec-WebSocket-Accept"):
                await WebSocket.connect(srv.url)

    run(main())


def test_refused_upgrade_reports_the_status():
    async def main():
        async with TinyServer(None, status="401 Unauthorized") as srv:
            with pytest.raises(HandshakeError) as err:
                await WebSocket.connect(srv.url)
            assert err.value.status == 401

    run(main())


def test_not_a_ws_url():
    with pytest.raises(HandshakeError, match="not a ws"):
        run(WebSocket.connect("http://127.0.0.1:1/"))


def test_ping_is_answered_and_fragments_are_reassembled():
    pongs = []

    async def script(reader, writer):
        writer.write(server_frame(0x9, b"are you there"))
        writer.write(server_frame(0x1, b"frag", fin=False))
        writer.write(server_frame(0x0, b"men", fin=False))
        writer.write(server_frame(0x9, b"again"))  # control frames may come between fragments
        writer.write(server_frame(0x0, b"ted", fin=True))
        writer.write(server_frame(0x2, b"\x00\x01", fin=False))
        writer.write(server_frame(0x0, b"\x02", fin=True))
        await writer.drain()
        for _ in range(2):
            op, data, masked = await read_client_frame(reader)
            pongs.append((op, data, masked))
        await reader.read()

    async def main():
        async with TinyServer(script) as srv:
            ws = await WebSocket.connect(srv.url)
            assert await ws.recv() == "fragmented"
            assert await ws.recv() == b"\x00\x01\x02"
            await asyncio.sleep(0.1)
            await ws.close(wait=0)

    run(main())
    assert pongs == [(0xA, b"are you there", True), (0xA, b"again", True)]


def test_a_large_message_uses_the_64_bit_length_both_ways():
    big = "x" * 70_000

    async def script(reader, writer):
        op, data, _ = await read_client_frame(reader)
        writer.write(server_frame(0x1, data))
        await writer.drain()
        await reader.read()

    async def main():
        async with TinyServer(script) as srv:
            ws = await WebSocket.connect(srv.url)
            await ws.send_text(big)
            assert await ws.recv() == big
            await ws.close(wait=0)

    run(main())


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        ([server_frame(0x1, b"y" * 2000)], 1009),  # one frame over max_frame
        ([server_frame(0x1, b"y" * 900, fin=False), server_frame(0x0, b"y" * 900)], 1009),
        ([server_frame(0x1, b"masked", masked=True)], 1002),
        ([bytes([0x80 | 0x40 | 0x1, 1]) + b"r"], 1002),  # RSV1 without an extension
        ([server_frame(0x0, b"orphan")], 1002),
        ([server_frame(0x1, b"a", fin=False), server_frame(0x1, b"b")], 1002),
        ([server_frame(0x9, b"p" * 126)], 1002),  # control frame too long
        ([server_frame(0x3, b"?")], 1002),  # unknown opcode
        ([server_frame(0x1, b"\xff\xfe")], 1007),
    ],
)
def test_protocol_violations_close_with_the_right_code(frames, code):
    got = {}

    async def script(reader, writer):
        for f in frames:
            writer.write(f)
        await writer.drain()
        op, data, _ = await read_client_frame(reader)
        got["close"] = (op, struct.unpack("!H", data[:2])[0])

    async def main():
        async with TinyServer(script) as srv:
            ws = await WebSocket.connect(srv.url, max_frame=1024, max_message=1500)
            with pytest.raises(ConnectionClosed) as err:
                await ws.recv()
            assert err.value.code == code
            await srv.done.wait()

    run(main())
    assert got["close"] == (0x8, code)


def test_server_close_is_echoed_and_reported():
    echoed = {}

    async def script(reader, writer):
        writer.write(server_frame(0x8, struct.pack("!H", 4001) + b"authentication failed"))
        await writer.drain()
        op, data, _ = await read_client_frame(reader)
        echoed["frame"] = (op, data)

    async def main():
        async with TinyServer(script) as srv:
            ws = await WebSocket.connect(srv.url)
            with pytest.raises(ConnectionClosed) as err:
                await ws.recv()
            assert (err.value.code, err.value.reason) == (4001, "authentication failed")
            with pytest.raises(ConnectionClosed):
                await ws.send_text("too late")
            await srv.done.wait()

    run(main())
    assert echoed["frame"] == (0x8, struct.pack("!H", 4001))


def test_dropped_connection_is_1006_and_close_from_another_task_works():
    async def dropper(reader, writer):
        writer.transport.abort()

    async def holder(reader, writer):
        op, data, _ = await read_client_frame(reader)
        writer.write(server_frame(0x8, data[:2]))
        await writer.drain()

    async def main():
        async with TinyServer(dropper) as srv:
            ws = await WebSocket.connect(srv.url)
            with pytest.raises(ConnectionClosed) as err:
                await ws.recv()
            assert err.value.code == 1006
        async with TinyServer(holder) as srv:
            ws = await WebSocket.connect(srv.url)
            reader = asyncio.create_task(ws.recv())
            await asyncio.sleep(0.05)
            await ws.close()  # the reading task gets the server's close frame
            with pytest.raises(ConnectionClosed) as err:
                await reader
            assert err.value.code == 1000

    run(main())


def test_unreachable_server_is_an_oserror():
    async def main():
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        with pytest.raises(OSError):
            await WebSocket.connect(f"ws://127.0.0.1:{port}")

    run(main())
