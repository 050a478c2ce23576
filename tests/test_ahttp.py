"""nanobot.ahttp against real local servers that speak scripted HTTP bytes: keep-alive and its
failure modes, chunked and sized bodies, timeouts as gaps, proxies (environment and explicit,
absolute-form and CONNECT), TLS with a test CA, and errors that never carry the URL's path."""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import shutil
import socket
import ssl
import subprocess
import time
import warnings
from dataclasses import dataclass

import pytest

from nanobot import ahttp

SECRET_PATH = "/botSECRET123/getMe"
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture(autouse=True)
def clean_proxy_env(monkeypatch):
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    ahttp.environ_proxy.cache_clear()
    yield
    ahttp.environ_proxy.cache_clear()


def run(main):
    """Run main() in a fresh event loop, bounded so a hang fails the test instead of the suite,
    and fail when a socket was left for the garbage collector to close (a leak)."""

    async def bounded():
        return await asyncio.wait_for(main(), 5)

    gc.collect()  # what earlier tests left is not this one's
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", ResourceWarning)
        result = asyncio.run(bounded())
        gc.collect()
    leaks = [str(w.message) for w in seen if issubclass(w.category, ResourceWarning)]
    assert not leaks
    return result


def answer(body=b"", status="200 OK", headers=(), version="HTTP/1.1", length=True) -> bytes:
    lines = [f"{version} {status}", *headers]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass
class Req:
    line: str
    headers: dict[str, str]
    body: bytes
    raw: bytes


class Peer:
    """One accepted connection, as the script sees it."""

    def __init__(self, server: Server, index: int, reader, writer) -> None:
        self.server, self.index = server, index
        self.reader, self.writer = reader, writer
        self.requests: list[Req] = []

    async def request(self) -> Req | None:
        """The next request (head and Content-Length body), or None when the client closed."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        line, *fields = head.decode("latin-1").split("\r\n")
        headers = {}
        for field in filter(None, fields):
            name, _, value = field.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await self.reader.readexactly(int(headers.get("content-length", 0)))
        req = Req(line, headers, body, head + body)
        self.requests.append(req)
        return req

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def serve(self, reply: bytes) -> None:
        """Answer every request on this connection with reply until the client closes."""
        while await self.request() is not None:
            await self.send(reply)


class Server:
    """asyncio server on 127.0.0.1:0 in the running loop; script(peer) runs per connection and
    the connection is closed when it returns."""

    def __init__(self, script, tls: ssl.SSLContext | None = None) -> None:
        self.script, self.tls = script, tls
        self.peers: list[Peer] = []
        self.errors: list[Exception] = []
        self._tasks: set[asyncio.Task] = set()

    async def __aenter__(self) -> Server:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks)
        await self._server.wait_closed()
        if self.errors:  # a broken script fails the test instead of hiding
            raise self.errors[0]

    async def _accept(self, reader, writer) -> None:
        self._tasks.add(asyncio.current_task())
        peer = Peer(self, len(self.peers), reader, writer)
        self.peers.append(peer)
        try:
            await self.script(peer)
        except asyncio.CancelledError:
            pass  # the test is over (3.11's start_server logs a cancelled handler as an error)
        except (OSError, asyncio.IncompleteReadError):
            pass  # the client dropped the connection mid-script
        except Exception as e:
            self.errors.append(e)
        finally:
            writer.close()

    @property
    def accepts(self) -> int:
        return len(self.peers)

    @property
    def requests(self) -> list[Req]:
        return [req for peer in self.peers for req in peer.requests]

    def url(self, path: str = SECRET_PATH, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"


def keep_alive(reply: bytes):
    async def script(peer: Peer) -> None:
        await peer.serve(reply)

    return script


async def closed(client: ahttp.Client) -> None:
    client.close()
    await asyncio.sleep(0)  # let the transports finish closing inside this loop


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_no_path(exc: BaseException) -> None:
    assert "SECRET123" not in str(exc) and "getMe" not in str(exc)


# 1. A JSON POST round trip


def test_a_json_post_arrives_exactly_and_its_answer_is_decoded():
    reply = answer(b'{"ok": true, "text": "h\xc3\xa9"}', headers=["Content-Type: X/Y", "X-Up: 1"])

    async def main():
        async with Server(keep_alive(reply)) as srv:
            client = ahttp.Client()
            try:
                resp = await client.post_json(srv.url(), {"chat_id": 1, "text": "é"}, timeout=2)
            finally:
                await closed(client)
            return srv.requests, resp, srv.port

    (req,), resp, port = run(main)
    assert req.line == f"POST {SECRET_PATH} HTTP/1.1"
    assert req.headers["host"] == f"127.0.0.1:{port}"
    assert req.headers["content-type"] == "application/json"
    body = json.dumps({"chat_id": 1, "text": "é"}, ensure_ascii=False).encode()
    assert req.body == body and req.headers["content-length"] == str(len(body))
    assert resp.status == 200
    assert resp.headers["content-type"] == "X/Y" and resp.headers["x-up"] == "1"
    assert resp.json() == {"ok": True, "text": "hé"}
    assert resp.text == '{"ok": true, "text": "hé"}'


def test_post_json_refuses_nan_before_connecting():
    async def main():
        async with Server(keep_alive(answer())) as srv:
            with pytest.raises(ValueError):
                await ahttp.Client().post_json(srv.url(), {"x": float("nan")})
            return srv.accepts

    assert run(main) == 0


def test_a_get_carries_no_content_length_and_the_query_string():
    async def main():
        async with Server(keep_alive(answer(b"x"))) as srv:
            client = ahttp.Client()
            resp = await client.request("GET", srv.url("/p?a=1&b=2"), timeout=2)
            await closed(client)
            return srv.requests, resp

    (req,), resp = run(main)
    assert req.line == "GET /p?a=1&b=2 HTTP/1.1"
    assert "content-length" not in req.headers and resp.body == b"x"


# 2. Keep-alive


def test_sequential_and_concurrent_requests_reuse_pooled_connections():
    async def main():
        async with Server(keep_alive(answer(b"ok"))) as srv:
            client = ahttp.Client()
            for _ in range(2):
                assert (await client.request("GET", srv.url(), timeout=2)).body == b"ok"
            after_two = srv.accepts
            urls = [srv.url()] * 3
            await asyncio.gather(*(client.request("GET", u, timeout=2) for u in urls))
            after_burst = srv.accepts
            await asyncio.gather(*(client.request("GET", u, timeout=2) for u in urls))
            await closed(client)
            return after_two, after_burst, srv.accepts, len(srv.requests)

    # the burst needs two more connections beside the idle one, the second burst none
    assert run(main) == (1, 3, 3, 8)


@pytest.mark.parametrize(
    "reply",
    [
        answer(b"ok", headers=["Connection: close"]),
        answer(b"ok", version="HTTP/1.0"),
        answer(b"ok", length=False),  # the body ends when the connection closes
    ],
    ids=["connection-close", "http-1.0", "body-until-close"],
)
def test_an_answer_that_ends_its_connection_is_not_reused(reply):
    async def script(peer):
        await peer.request()
        await peer.send(reply)

    async def main():
        async with Server(script) as srv:
            client = ahttp.Client()
            bodies = [(await client.request("GET", srv.url(), timeout=2)).body for _ in "ab"]
            await closed(client)
            return bodies, srv.accepts

    assert run(main) == ([b"ok", b"ok"], 2)


def test_http_1_0_with_keep_alive_is_reused():
    reply = answer(b"ok", version="HTTP/1.0", headers=["Connection: keep-alive"])

    async def main():
        async with Server(keep_alive(reply)) as srv:
            client = ahttp.Client()
            for _ in "ab":
                await client.request("GET", srv.url(), timeout=2)
            await closed(client)
            return srv.accepts

    assert run(main) == 1


def test_the_pool_keeps_at_most_pool_idle_connections_per_origin():
    async def main():
        async with Server(keep_alive(answer(b"ok"))) as srv:
            client = ahttp.Client(pool=1)
            for _ in "ab":
                await asyncio.gather(*(client.request("GET", srv.url(), timeout=2) for _ in "xyz"))
            await closed(client)
            return srv.accepts

    assert run(main) == 5  # three, then one idle kept and two more


def test_a_connection_with_bytes_beyond_the_answer_is_not_reused():
    async def main():
        async with Server(keep_alive(answer(b"ok") + b"!")) as srv:
            client = ahttp.Client()
            bodies = [(await client.request("GET", srv.url(), timeout=2)).body for _ in "ab"]
            await closed(client)
            return bodies, srv.accepts

    assert run(main) == ([b"ok", b"ok"], 2)


# 3. Pooled connections the server closed


def test_an_idle_connection_the_server_closed_is_replaced():
    async def script(peer):
        await peer.request()
        await peer.send(answer(b"first" if peer.index == 0 else b"second"))
        # keep-alive advertised, then closed while idle

    async def main():
        async with Server(script) as srv:
            client = ahttp.Client()
            first = await client.request("GET", srv.url(), timeout=2)
            await asyncio.sleep(0.05)  # the close reaches the client while the socket is idle
            second = await client.request("GET", srv.url(), timeout=2)
            await closed(client)
            return first.body, second.body, [len(p.requests) for p in srv.peers]

    assert run(main) == (b"first", b"second", [1, 1])


def test_a_reused_connection_closed_without_an_answer_is_retried_once_fresh():
    async def script(peer):
        if peer.index == 0:
            await peer.request()
            await peer.send(answer(b"first"))
            await peer.request()  # read the second request, then close without a byte
        else:
            await peer.serve(answer(b"fresh"))

    async def main():
        async with Server(script) as srv:
            client = ahttp.Client()
            first = await client.post_json(srv.url(), {"n": 1}, timeout=2)
            second = await client.post_json(srv.url(), {"n": 2}, timeout=2)
            await closed(client)
            return first.body, second.body, [[r.body for r in p.requests] for p in srv.peers]

    first, second, seen = run(main)
    assert (first, second) == (b"first", b"fresh")
    assert seen == [[b'{"n": 1}', b'{"n": 2}'], [b'{"n": 2}']]


def test_a_fresh_connection_closed_without_an_answer_is_disconnected():
    async def script(peer):
        await peer.request()

    async def main():
        async with Server(script) as srv:
            client = ahttp.Client()
            with pytest.raises(ahttp.Disconnected) as caught:
                await client.request("GET", srv.url(), timeout=2)
            await closed(client)
            return caught.value, srv.accepts

    exc, accepts = run(main)
    assert accepts == 1  # not retried: a fresh connection that fails is the server's answer
    assert_no_path(exc)


# 4. Bodies


CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


def test_a_chunked_body_with_extensions_and_trailers_is_read_and_the_connection_reused():
    body = b"4;name=value\r\nWiki\r\n5\r\npedia\r\nE ; x\r\n in\r\n\r\nchunks.\r\n0\r\n"
    reply = CHUNKED_HEAD + body + b"X-Trailer: 1\r\nX-Other: 2\r\n\r\n"

    async def main():
        async with Server(keep_alive(reply)) as srv:
            client = ahttp.Client()
            bodies = [(await client.request("GET", srv.url(), timeout=2)).body for _ in "ab"]
            await closed(client)
            return bodies, srv.accepts

    assert run(main) == ([b"Wikipedia in\r\n\r\nchunks."] * 2, 1)


@pytest.mark.parametrize(
    ("first", "rest", "pieces"),
    [
        (CHUNKED_HEAD + b"5\r\nfirst\r\n", b"6\r\nsecond\r\n0\r\n\r\n", [b"first", b"second"]),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello", b"world", [b"hello", b"world"]),
    ],
    ids=["chunked", "sized"],
)
def test_chunks_yields_each_piece_as_sent_and_the_connection_is_pooled_after_the_last(
    first, rest, pieces
):
    async def main():
        got_one = asyncio.Event()

        async def script(peer):
            await peer.request()
            await peer.send(first)
            await got_one.wait()  # the rest only after the client has the first piece
            await peer.send(rest)
            await peer.serve(answer(b"again"))

        async with Server(script) as srv:
            client = ahttp.Client()
            resp = await client.request("GET", srv.url(), timeout=2, stream=True)
            got = []
            async for piece in resp.chunks():
                got.append(piece)
                got_one.set()
            again = await client.request("GET", srv.url(), timeout=2)
            await closed(client)
            return got, again.body, srv.accepts

    assert run(main) == (pieces, b"again", 1)


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        CHUNKED_HEAD + b"a\r\nshort",
        CHUNKED_HEAD + b"5\r\nhello\r\n",  # no last chunk
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n",  # the head never ends
        b"HTTP/1.1 200 OK\r\nX-Par",
    ],
    ids=["sized", "chunk", "no-last-chunk", "head", "header-line"],
)
def test_an_answer_cut_short_is_disconnected(reply):
    async def script(peer):
        if peer.index == 0:
            await peer.request()
            await peer.send(reply)  # and close
        else:
            await peer.serve(answer(b"ok"))

    async def main():
        async with Server(script) as srv:
            client = ahttp.Client()
            with pytest.raises(ahttp.Disconnected) as caught:
                await client.request("GET", srv.url(), timeout=2)
            after = await client.request("GET", srv.url(), timeout=2)
            await closed(client)
            return caught.value, after.body

    exc, after = run(main)
    assert_no_path(exc)
    assert after == b"ok"


@pytest.mark.parametrize(
    "reply",
    [
        CHUNKED_HEAD + b"zz\r\nhello\r\n0\r\n\r\n",
        CHUNKED_HEAD + b"-5\r\nhello\r\n0\r\n\r\n",
        CHUNKED_HEAD + b"\r\nhello\r\n0\r\n\r\n",
        CHUNKED_HEAD + b"3\r\nhellohello\r\n0\r\n\r\n",  # a chunk longer than its size
        b"HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\nhello",
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"HTTP/1.1 2xx OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n" + b"X-Many: 1\r\n" * 101 + b"\r\n",
        CHUNKED_HEAD + b"f" * 70_000 + b"\r\n",
    ],
    ids=[
        "chunk-size-not-hex",
        "chunk-size-negative",
        "chunk-size-empty",
        "chunk-overruns",
        "length-not-a-number",
        "not-http",
        "status-not-a-number",
        "header-over-the-line-limit",
        "too-many-headers",
        "chunk-size-over-the-line-limit",
    ],
)
def test_a_malformed_answer_is_disconnected_and_its_connection_dropped(reply):
    async def script(peer):
        if peer.index == 0:
            await peer.request()
            await peer.send(reply)
        await peer.serve(answer(b"ok"))  # the connection stays open: the client must drop it

    async def main():
        async with Server(script) as srv:
            client = ahttp.Client()
            with pytest.raises(ahttp.Disconnected) as caught:
                await client.request("GET", srv.url(), timeout=2)
            after = await client.request("GET", srv.url(), timeout=2)
            await closed(client)
            return caught.value, after.body, srv.accepts

    exc, after, accepts = run(main)
    assert_no_path(exc)
    assert (after, accepts) == (b"ok", 2)


TRICKLED = [
    answer(b"sized body"),
    CHUNKED_HEAD + b"3;x=y\r\nabc\r\n4\r\ndefg\r\n0\r\nX-T: 1\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\n" + answer(b"final"),
    b"HTTP/1.1 200 OK\nContent-Length: 2\n\nlf",  # bare LF line ends
]


@pytest.mark.parametrize("reply", TRICKLED, ids=["sized", "chunked", "interim", "bare-lf"])
def test_an_answer_trickled_byte_by_byte_parses_the_same(reply):
    async def script(peer):
        await peer.request()
        for i in range(len(reply)):
            await peer.send(reply[i : i + 1])
            await asyncio.sleep(0.0005)  # each byte its own read on the client side
        await peer.serve(reply)  # then all at once on the same connection

    async def main():
        async with Server(script) as srv:
            client = ahttp.Client()
            trickled = await client.request("GET", srv.url(), timeout=2)
            whole = await client.request("GET", srv.url(), timeout=2)
            await closed(client)
            return trickled, whole, srv.accepts

    trickled, whole, accepts = run(main)
    assert (trickled.status, trickled.body) == (whole.status, whole.body) == (200, whole.body)
    assert trickled.body in (b"sized body", b"abcdefg", b"final", b"lf")
    assert accepts == 1


def test_large_bodies_arrive_whole():
    data = bytes(range(256)) * 4096  # 1 MiB
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (data[:99_999], data[99_999:]))

    async def main():
        replies = iter([answer(data), CHUNKED_HEAD + chunked + b"0\r\n\r\n"])

        async def script(peer):
            while await peer.request() is not None:
                await peer.send(next(replies))

        async with Server(script) as srv:
            client = ahttp.Client()
            bodies = [(await client.request("GET", srv.url(), timeout=2)).body for _ in "ab"]
            await closed(client)
            return bodies

    assert run(main) == [data, data]


def test_interim_100_continue_answers_are_skipped():
    reply = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
    reply += answer(b"final", headers=["X-Final: yes"])

    async def main():
        async with Server(keep_alive(reply)) as srv:
            client = ahttp.Client()
            resp = await client.post_json(srv.url(), {}, timeout=2)
            again = await client.post_json(srv.url(), {}, timeout=2)
            await closed(client)
            return resp, again.body, srv.accepts

    resp, again, accepts = run(main)
    assert (resp.status, resp.body, resp.headers.get("x-final")) == (200, b"final", "yes")
    assert "link" not in resp.headers
    assert (again, accepts) == (b"final", 1)


@pytest.mark.parametrize("status", ["204 No Content", "304 Not Modified"])
def test_a_bodiless_status_reads_no_body_and_keeps_the_connection(status):
    async def script(peer):
        await peer.request()
        await peer.send(answer(status=status, length=False))
        await peer.serve(answer(b"next"))

    async def main():
        async with Server(script) as srv:
            client = ahttp.Client()
            resp = await client.request("GET", srv.url(), timeout=2)
            nxt = await client.request("GET", srv.url(), timeout=2)
            await closed(client)
            return resp.status, resp.body, nxt.body, srv.accepts

    assert run(main) == (int(status[:3]), b"", b"next", 1)


def test_read_after_the_body_was_read_returns_it_again():
    async def main():
        async with Server(keep_alive(answer(b"body"))) as srv:
            client = ahttp.Client()
            resp = await client.request("GET", srv.url(), timeout=2)
            again = await resp.read()
            await closed(client)
            return again, resp.body, resp.text

    assert run(main) == (b"body", b"body", "body")


# 5. Timeouts


def test_a_server_that_never_answers_times_out_on_read():
    async def script(peer):
        await peer.request()
        await asyncio.sleep(10)

    async def main():
        async with Server(script) as srv:
            client = ahttp.Client()
            started = time.monotonic()
            with pytest.raises(ahttp.ReadTimedOut) as caught:
                await client.request("GET", srv.url(), timeout=(1, 0.2))
            took = time.monotonic() - started
            await closed(client)
            return caught.value, took

    exc, took = run(main)
    assert 0.15 < took < 1.0
    assert_no_path(exc)


def test_a_stall_inside_the_head_or_the_body_times_out_and_drops_the_connection():
    async def main():
        for partial in (b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nab"):
            dropped = asyncio.Event()

            async def script(peer, partial=partial, dropped=dropped):
                await peer.request()
                await peer.send(partial)
                await peer.reader.read()  # until the client drops the connection
                dropped.set()

            async with Server(script) as srv:
                client = ahttp.Client()
                with pytest.raises(ahttp.ReadTimedOut) as caught:
                    await client.request("GET", srv.url(), timeout=(1, 0.1))
                # caught's traceback keeps the Response alive: no garbage collector closes it
                await asyncio.wait_for(dropped.wait(), 1)
                del caught
                await closed(client)

    run(main)


@pytest.mark.parametrize("partial", [b"", b"HTTP/1.1 200 OK\r\n", answer(b"abc")[:-1]])
def test_a_cancelled_call_drops_its_connection(partial):
    async def main():
        asked, dropped = asyncio.Event(), asyncio.Event()

        async def script(peer):
            await peer.request()
            await peer.send(partial)
            asked.set()
            await peer.reader.read()  # until the client drops the connection
            dropped.set()

        async with Server(script) as srv:
            client = ahttp.Client()
            call = asyncio.ensure_future(client.request("GET", srv.url(), timeout=2))
            await asyncio.wait_for(asked.wait(), 1)
            await asyncio.sleep(0.01)  # the partial answer reaches the client
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            await asyncio.wait_for(dropped.wait(), 1)
            await closed(client)
            return srv.accepts

    assert run(main) == 1


def test_the_read_timeout_bounds_each_gap_not_the_whole_answer():
    async def script(peer):
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n")
        for byte in b"abcdef":
            await asyncio.sleep(0.08)
            await peer.send(bytes([byte]))

    async def main():
        async with Server(script) as srv:
            client = ahttp.Client()
            started = time.monotonic()
            resp = await client.request("GET", srv.url(), timeout=(1, 0.3))
            took = time.monotonic() - started
            await closed(client)
            return resp.body, took

    body, took = run(main)
    assert body == b"abcdef" and took > 0.3


def test_a_server_that_stops_reading_a_large_body_times_out():
    async def script(peer):
        await asyncio.sleep(10)  # accepts, never reads: the client's send buffers fill

    async def main():
        async with Server(script) as srv:
            client = ahttp.Client()
            started = time.monotonic()
            with pytest.raises(ahttp.ReadTimedOut) as caught:
                await client.request("POST", srv.url(), b"x" * 16_000_000, timeout=(1, 0.3))
            took = time.monotonic() - started
            await closed(client)
            return caught.value, took

    exc, took = run(main)
    assert took < 2
    assert_no_path(exc)


def test_a_refused_connection_is_connect_failed():
    port = free_port()

    async def main():
        client = ahttp.Client()
        with pytest.raises(ahttp.ConnectFailed) as caught:
            await client.request("GET", f"http://127.0.0.1:{port}{SECRET_PATH}", timeout=1)
        return caught.value

    assert_no_path(run(main))


def test_a_tls_handshake_that_never_comes_is_a_connect_timeout():
    async def script(peer):
        await asyncio.sleep(10)  # accepts, never speaks TLS

    async def main():
        async with Server(script) as srv:
            client = ahttp.Client()
            started = time.monotonic()
            with pytest.raises(ahttp.ConnectFailed) as caught:
                await client.request("GET", srv.url(scheme="https"), timeout=(0.2, 5))
            return caught.value, time.monotonic() - started

    exc, took = run(main)
    assert took < 1.0 and "0.2 s" in str(exc)
    assert_no_path(exc)


# 6. Proxies


@pytest.mark.parametrize(
    ("env", "scheme", "host", "port", "expected"),
    [
        ({"HTTP_PROXY": "http://p:3128"}, "http", "api.example.com", 80, "http://p:3128"),
        ({"http_proxy": "http://p:3128"}, "http", "api.example.com", 80, "http://p:3128"),
        ({"HTTP_PROXY": "http://p:3128"}, "https", "api.example.com", 443, ""),
        ({"HTTPS_PROXY": "p:3128"}, "https", "api.example.com", 443, "http://p:3128"),
        ({"https_proxy": "https://p:3129"}, "https", "h", 443, "https://p:3129"),
        ({"ALL_PROXY": "http://all:1"}, "https", "h", 443, "http://all:1"),
        ({"ALL_PROXY": "http://all:1", "HTTP_PROXY": "http://p:2"}, "http", "h", 80, "http://p:2"),
        ({}, "http", "h", 80, ""),
    ],
)
def test_environ_proxy_picks_the_scheme_s_variable(monkeypatch, env, scheme, host, port, expected):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    ahttp.environ_proxy.cache_clear()
    assert ahttp.environ_proxy(scheme, host, port) == expected


@pytest.mark.parametrize(
    ("no_proxy", "host", "port", "bypassed"),
    [
        ("api.example.com", "api.example.com", 443, True),
        ("api.example.com", "other.example.com", 443, False),
        ("API.Example.COM", "api.example.com", 443, True),
        (".example.com", "api.example.com", 443, True),
        (".example.com", "example.com", 443, True),
        ("example.com", "deep.api.example.com", 443, True),
        ("example.com", "notexample.com", 443, False),
        ("example.com", "example.com.evil.net", 443, False),
        ("*", "anything.net", 443, True),
        ("10.0.0.0/8", "10.1.2.3", 443, True),
        ("10.0.0.0/8", "11.0.0.1", 443, False),
        ("10.0.0.0/8", "ten.example.com", 443, False),
        ("192.168.1.5", "192.168.1.5", 443, True),
        ("::1", "::1", 443, True),
        ("fd00::/8", "fd12::7", 443, True),
        ("api.example.com:8443", "api.example.com", 8443, True),
        ("api.example.com:8443", "api.example.com", 443, False),
        ("10.0.0.0/8:8443", "10.1.2.3", 8443, True),
        ("a.net, b.net ,c.net", "b.net", 443, True),
        ("a.net c.net", "c.net", 443, True),
        (",,", "a.net", 443, False),
    ],
)
def test_no_proxy_entries(monkeypatch, no_proxy, host, port, bypassed):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", no_proxy)
    ahttp.environ_proxy.cache_clear()
    assert ahttp.environ_proxy("https", host, port) == (
        "" if bypassed else "http://proxy.internal:3128"
    )


def test_lower_case_no_proxy_is_honoured(monkeypatch):
    monkeypatch.setenv("http_proxy", "http://proxy.internal:3128")
    monkeypatch.setenv("no_proxy", "localhost,127.0.0.1")
    ahttp.environ_proxy.cache_clear()
    assert ahttp.environ_proxy("http", "127.0.0.1", 8080) == ""
    assert ahttp.environ_proxy("http", "example.net", 80) == "http://proxy.internal:3128"


async def _relay(reader, writer) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


def forward_proxy(reply: bytes = b"", refuse: bytes = b""):
    """A proxy script: absolute-form requests get `reply`; CONNECT is refused with `refuse` or
    answered 200 and relayed to the target."""

    async def script(peer: Peer) -> None:
        while (req := await peer.request()) is not None:
            if not req.line.startswith("CONNECT "):
                await peer.send(reply)
                continue
            if refuse:
                await peer.send(refuse)
                return
            host, _, port = req.line.split()[1].rpartition(":")
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
            await peer.send(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await asyncio.gather(_relay(peer.reader, up_writer), _relay(up_reader, peer.writer))
            return

    return script


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_http_through_the_environment_proxy_uses_absolute_form_and_basic_auth(monkeypatch):
    async def main():
        async with Server(forward_proxy(answer(b"via proxy"))) as proxy:
            monkeypatch.setenv("HTTP_PROXY", f"http://us%40er:p%3Ass@127.0.0.1:{proxy.port}")
            ahttp.environ_proxy.cache_clear()
            client = ahttp.Client()
            bodies = [
                (await client.request("GET", f"http://origin.test:8080{SECRET_PATH}?q=1")).body
                for _ in "ab"
            ]
            await closed(client)
            return bodies, proxy.requests, proxy.accepts

    bodies, reqs, accepts = run(main)
    assert bodies == [b"via proxy"] * 2 and accepts == 1
    assert reqs[0].line == f"GET http://origin.test:8080{SECRET_PATH}?q=1 HTTP/1.1"
    assert reqs[0].headers["host"] == "origin.test:8080"
    assert reqs[0].headers["proxy-authorization"] == basic("us@er", "p:ss")


def test_an_explicit_proxy_wins_over_the_environment(monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")  # nothing listens

    async def main():
        async with Server(forward_proxy(answer(b"explicit"))) as proxy:
            client = ahttp.Client(proxy=f"http://127.0.0.1:{proxy.port}")
            resp = await client.request("GET", f"http://origin.test{SECRET_PATH}", timeout=2)
            await closed(client)
            return resp.body, proxy.requests

    body, (req,) = run(main)
    assert body == b"explicit"
    assert req.line == f"GET http://origin.test{SECRET_PATH} HTTP/1.1"
    assert "proxy-authorization" not in req.headers


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """A test CA and a server certificate it signed for 127.0.0.1 and localhost (by openssl)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make test certificates")
    d = tmp_path_factory.mktemp("certs")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    (d / "ext.cnf").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"
    )
    commands = [
        ["req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2"]
        + ["-subj", "/CN=nanobot test CA", "-addext", "basicConstraints=critical,CA:TRUE"]
        + ["-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ["req", *ec, "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key"]
        + ["-CAcreateserial", "-out", "leaf.pem", "-days", "2", "-extfile", "ext.cnf"],
    ]
    for args in commands:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)
    return d


def server_tls(certs) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certs / "leaf.pem", certs / "leaf.key")
    return ctx


def test_https_through_a_proxy_tunnels_with_connect_then_tls(monkeypatch, certs):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certs / "ca.pem"))

    async def main():
        origin = Server(keep_alive(answer(b"secret answer")), tls=server_tls(certs))
        async with origin, Server(forward_proxy()) as proxy:
            monkeypatch.setenv("HTTPS_PROXY", f"http://bot:pw@127.0.0.1:{proxy.port}")
            ahttp.environ_proxy.cache_clear()
            client = ahttp.Client()
            bodies = [(await client.request("GET", origin.url(scheme="https"))).body for _ in "ab"]
            await closed(client)
            return bodies, proxy.requests, origin.requests, origin.port, proxy.accepts

    bodies, proxied, arrived, port, proxy_accepts = run(main)
    assert bodies == [b"secret answer"] * 2 and proxy_accepts == 1  # one tunnel, kept alive
    (connect,) = proxied  # the proxy saw only the CONNECT: the request went inside TLS
    assert connect.line == f"CONNECT 127.0.0.1:{port} HTTP/1.1"
    assert connect.headers["host"] == f"127.0.0.1:{port}"
    assert connect.headers["proxy-authorization"] == basic("bot", "pw")
    assert [r.line for r in arrived] == [f"GET {SECRET_PATH} HTTP/1.1"] * 2
    assert "proxy-authorization" not in arrived[0].headers


def test_a_proxy_refusing_connect_is_connect_failed(monkeypatch, certs):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certs / "ca.pem"))
    refusal = answer(b"auth!", status="407 Proxy Authentication Required")

    async def main():
        async with Server(forward_proxy(refuse=refusal)) as proxy:
            client = ahttp.Client(proxy=f"http://127.0.0.1:{proxy.port}")
            with pytest.raises(ahttp.ConnectFailed) as caught:
                await client.request("GET", f"https://origin.test{SECRET_PATH}", timeout=2)
            return caught.value

    exc = run(main)
    assert "407" in str(exc)
    assert_no_path(exc)


def test_a_tunnel_whose_tls_fails_or_whose_proxy_stalls_is_closed(monkeypatch, certs):
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)  # the origin's CA is not trusted
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)

    async def main():
        dropped = asyncio.Event()

        async def stalling_proxy(peer):
            await peer.request()  # the CONNECT, never answered
            await peer.reader.read()
            dropped.set()

        origin = Server(keep_alive(answer(b"never")), tls=server_tls(certs))
        async with origin, Server(forward_proxy()) as proxy, Server(stalling_proxy) as stall:
            kept = []  # the tracebacks keep the tunnels' objects alive: no collector closes them
            for server, timeout in ((proxy, 2), (stall, 0.2)):
                client = ahttp.Client(proxy=f"http://127.0.0.1:{server.port}")
                with pytest.raises(ahttp.ConnectFailed) as caught:
                    await client.request("GET", origin.url(scheme="https"), timeout=(timeout, 2))
                assert_no_path(caught.value)
                kept.append(caught)
            await asyncio.wait_for(dropped.wait(), 1)
            (relay,) = proxy._tasks
            await asyncio.wait_for(relay, 1)  # the relay ends when the client closes its side
            return origin.requests

    assert run(main) == []


def test_an_https_proxy_is_reached_over_tls_for_http_and_https_origins(monkeypatch, certs):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certs / "ca.pem"))

    async def main():
        origin = Server(keep_alive(answer(b"inner")), tls=server_tls(certs))
        proxy = Server(forward_proxy(answer(b"proxied")), tls=server_tls(certs))
        async with origin, proxy:
            client = ahttp.Client(proxy=f"https://127.0.0.1:{proxy.port}")
            plain = await client.request("GET", f"http://origin.test{SECRET_PATH}", timeout=2)
            tunnelled = await client.request("GET", origin.url(scheme="https"), timeout=2)
            await closed(client)
            return plain.body, tunnelled.body, [r.line.split()[0] for r in proxy.requests]

    assert run(main) == (b"proxied", b"inner", ["GET", "CONNECT"])


# 7. TLS direct


def test_https_with_the_ca_bundle_from_the_environment(monkeypatch, certs):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certs / "ca.pem"))
    assert ahttp.ca_bundle() == str(certs / "ca.pem")

    async def main():
        async with Server(keep_alive(answer(b"tls ok")), tls=server_tls(certs)) as srv:
            client = ahttp.Client()
            bodies = [(await client.post_json(srv.url(scheme="https"), {})).body for _ in "ab"]
            await closed(client)
            return bodies, srv.accepts

    assert run(main) == ([b"tls ok"] * 2, 1)


def test_an_untrusted_certificate_is_connect_failed(monkeypatch, certs):
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)  # certifi's or the system's store

    async def main():
        async with Server(keep_alive(answer(b"never")), tls=server_tls(certs)) as srv:
            client = ahttp.Client()
            with pytest.raises(ahttp.ConnectFailed) as caught:
                await client.request("GET", srv.url(scheme="https"), timeout=2)
            return caught.value, srv.requests

    exc, requests_seen = run(main)
    assert requests_seen == []
    assert_no_path(exc)


# 8. Safety


@pytest.mark.parametrize(
    "headers",
    [{"X-A": "v\r\nX-Injected: 1"}, {"X-A": "v\nX-Injected: 1"}, {"X-A\r\nX-B": "v"}],
)
def test_a_header_with_a_line_break_is_refused_before_sending(headers):
    async def main():
        async with Server(keep_alive(answer())) as srv:
            client = ahttp.Client()
            with pytest.raises(ValueError) as caught:
                await client.request("GET", srv.url(), headers=headers, timeout=2)
            await asyncio.sleep(0.01)
            return caught.value, srv.accepts

    exc, accepts = run(main)
    assert accepts == 0
    assert_no_path(exc)


@pytest.mark.parametrize(
    "url", [f"ftp://127.0.0.1{SECRET_PATH}", f"file://{SECRET_PATH}", f"http://{SECRET_PATH}"]
)
def test_a_url_that_is_not_http_is_refused(url):
    async def main():
        with pytest.raises(ValueError) as caught:
            await ahttp.Client().request("GET", url)
        return caught.value

    assert_no_path(run(main))


# 9. One client per loop


def test_loop_client_is_one_per_event_loop():
    async def twice():
        return ahttp.loop_client(), ahttp.loop_client()

    first, again = asyncio.run(twice())
    other, _ = asyncio.run(twice())
    assert first is again and isinstance(first, ahttp.Client)
    assert other is not first


# 10. Closing a response early


def test_closing_a_response_before_its_body_drops_the_connection():
    async def main():
        async with Server(keep_alive(answer(b"x" * 1000))) as srv:
            client = ahttp.Client()
            resp = await client.request("GET", srv.url(), timeout=2, stream=True)
            resp.close()
            assert [piece async for piece in resp.chunks()] == []
            nxt = await client.request("GET", srv.url(), timeout=2)
            await closed(client)
            return resp.body, nxt.body, srv.accepts

    assert run(main) == (b"", b"x" * 1000, 2)


def test_breaking_out_of_chunks_drops_the_connection():
    async def main():
        async with Server(keep_alive(answer(b"x" * 1000))) as srv:
            client = ahttp.Client()
            resp = await client.request("GET", srv.url(), timeout=2, stream=True)
            pieces = resp.chunks()
            async for _ in pieces:
                break
            await pieces.aclose()
            nxt = await client.request("GET", srv.url(), timeout=2)
            await closed(client)
            return nxt.body, srv.accepts

    assert run(main) == (b"x" * 1000, 2)
