"""The local API on a real socket: auth, limits, slow clients, errors and the audit trail.

Requests take the real route (admission with its rate limit, audit, durable inbox, dispatcher);
the far side (the agent turn) is an echo coroutine on an event loop in a thread. End-to-end tests
through the gateway process live with the gateway's tests.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import select
import socket
import threading
from contextlib import closing, suppress

import pytest

from nanobot.api import LocalAPI, is_loopback
from nanobot.channels.request import LocalAPIChannel
from nanobot.config.schema import Config, GatewayConfig
from nanobot.errors import NanobotError
from nanobot.route.admission import Admission
from nanobot.route.dispatcher import FAILURE_REPLY, Dispatcher
from nanobot.route.route import Route
from nanobot.route.store import Store
from nanobot.security import audit
from nanobot.security.ratelimit import RateLimiter

TOKEN = "tok-7d1f3a9c2b5e8f04"
CHAT = "/v1/chat/completions"
AUTH_POST = f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n".encode()
HI = [{"role": "user", "content": "hi"}]
HEALTH = {"status": "degraded", "channels": {"telegram": "running", "email": "restarting"}}


class FarSide:
    """Stands in for the agent: records each turn and echoes it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.cancelled = threading.Event()

    async def echo(self, session: str, text: str) -> str:
        self.calls.append((session, text))
        return f"echo[{session}]: {text}"

    async def explode(self, session: str, text: str) -> str:
        self.calls.append((session, text))
        raise RuntimeError("database password hunter2 leaked in a traceback")

    async def hang(self, session: str, text: str) -> str:
        self.calls.append((session, text))
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise


@pytest.fixture
def loop():
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


@pytest.fixture
def audit_file(tmp_path, monkeypatch):
    """A real audit log under a temporary NANOBOT_HOME; the previous one is restored after."""
    monkeypatch.setenv("NANOBOT_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(audit, "_AUDIT", audit.get_audit())
    log = audit.configure_audit(Config())
    yield audit.audit_path()
    log.close()


@pytest.fixture
def far():
    return FarSide()


def api_channel(cfg, run_turn, state, limiter=None) -> LocalAPIChannel:
    """The API's channel on the real route, whose turns are run_turn(user, text)."""

    async def turn(msg, ctx):
        return await run_turn(msg.chat_id, msg.content)

    channels: dict = {}
    dispatcher = Dispatcher(turn, Store(state), channels, 8)
    route = Route(Admission(limiter), dispatcher.store, dispatcher.submit)
    channels["http"] = LocalAPIChannel(cfg, route)
    return channels["http"]


@pytest.fixture
def start_api(loop, far, audit_file, tmp_path):
    """start(run_turn=far.echo, turn_timeout=30, limiter=None, **GatewayConfig fields) ->
    a started LocalAPI."""
    apis: list[LocalAPI] = []

    def start(run_turn=None, turn_timeout=30.0, limiter=None, **fields) -> LocalAPI:
        fields = {"host": "127.0.0.1", "port": 0, "token": TOKEN, "header_timeout": 0.5, **fields}
        cfg = GatewayConfig(**fields)
        channel = api_channel(cfg, run_turn or far.echo, tmp_path / "state", limiter)
        api = LocalAPI(cfg, loop, channel, lambda: HEALTH, turn_timeout)
        api.start()
        apis.append(api)
        return api

    yield start
    for api in apis:
        api.stop()


def call(api, method, path, body=None, token=TOKEN, headers=None, host="127.0.0.1"):
    """(status, headers, decoded JSON body) of one request over http.client."""
    hdrs = {**({} if token is None else {"Authorization": f"Bearer {token}"}), **(headers or {})}
    data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
    conn = http.client.HTTPConnection(host, api.port, timeout=10)
    conn.request(method, path, body=data, headers=hdrs)
    resp = conn.getresponse()
    with closing(conn):
        return resp.status, resp.headers, json.loads(resp.read())


def chat(api, text="hello", token=TOKEN, **extra):
    body = {"model": "nanobot", "messages": [{"role": "user", "content": text}], **extra}
    return call(api, "POST", CHAT, body, token=token)


def raw_exchange(api, data: bytes) -> bytes:
    """Send raw bytes, then read whatever the server answers until it closes."""
    with socket.create_connection(("127.0.0.1", api.port), timeout=5) as sock:
        sock.sendall(data)
        return sock.makefile("rb").read()


# -- health and routing --


def test_healthz_returns_the_health_state_as_json(start_api):
    api = start_api()
    status, headers, body = call(api, "GET", "/healthz", token=None)
    assert (status, body) == (200, HEALTH)
    assert (headers["Content-Type"], headers["Server"]) == ("application/json", "nanobot")


def test_unknown_paths_and_wrong_methods(start_api, far):
    api = start_api()
    for method, path in [("GET", "/nope"), ("POST", "/v1/modelz"), ("GET", CHAT + "x")]:
        status, _, body = call(api, method, path, body={} if method == "POST" else None)
        assert (status, body["error"]["type"]) == (404, "not_found_error")
    wrong = [("GET", CHAT, "POST"), ("DELETE", CHAT, "POST"), ("POST", "/healthz", "GET")]
    wrong.append(("POST", "/v1/models", "GET"))
    for method, path, allow in wrong:
        status, headers, body = call(api, method, path, body={} if method == "POST" else None)
        assert (status, headers["Allow"], set(body)) == (405, allow, {"error"})
    assert far.calls == []


def test_http_servers_own_refusals_are_json_without_banners(start_api):
    api = start_api()
    # Without a version the request is HTTP/0.9 style, answered with a bare body.
    assert json.loads(raw_exchange(api, b"THIS IS NOT HTTP\r\n\r\n"))["error"]["message"]
    many = b"".join(b"X-%d: y\r\n" % i for i in range(150))
    answer = raw_exchange(api, b"GET /healthz HTTP/1.1\r\n" + many + b"\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 431")
    assert b"\r\nServer: nanobot\r\n" in head and b"Python" not in head
    assert json.loads(body)["error"]["type"] == "invalid_request_error"


# -- authentication --


def test_right_token_runs_a_turn_and_answers_in_openai_shape(start_api, far):
    api = start_api()
    status, _, body = chat(api, "what time is it?", user="alice")
    assert status == 200
    assert far.calls == [("alice", "what time is it?")]
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert isinstance(body["created"], int)
    assert body["model"] == "nanobot"
    (choice,) = body["choices"]
    assert choice["message"] == {"role": "assistant", "content": "echo[alice]: what time is it?"}
    assert (choice["index"], choice["finish_reason"]) == (0, "stop")
    assert set(body["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"}


def test_last_user_message_in_text_parts_and_default_session(start_api, far):
    api = start_api()
    messages = [
        {"role": "system", "content": "ignored: history lives on the server"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {
            "role": "user",
            "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}],
        },
    ]
    status, _, body = call(api, "POST", CHAT, {"messages": messages})
    assert status == 200
    assert far.calls == [("default", "one\ntwo")]
    assert body["choices"][0]["message"]["content"] == "echo[default]: one\ntwo"


def test_missing_or_wrong_token_is_401(start_api, far, caplog):
    api = start_api()
    # Missing, empty, wrong, prefixes of the right one, one char longer, other case.
    tokens = [None, "", "wrong-token-value", TOKEN[:-1], TOKEN[:4], TOKEN + "x", TOKEN.upper()]
    with caplog.at_level(logging.WARNING, logger="nanobot.api"):
        for token in tokens:
            status, headers, body = chat(api, token=token)
            got = (status, headers["WWW-Authenticate"], body["error"]["type"])
            assert got == (401, "Bearer", "authentication_error"), token
    assert far.calls == []
    denied = [r.getMessage() for r in caplog.records if "Access denied" in r.getMessage()]
    assert len(denied) == len(tokens) and all("127.0.0.1" in m for m in denied)
    assert TOKEN not in caplog.text


def test_other_auth_schemes_are_401(start_api, far):
    api = start_api()
    for value in (TOKEN, f"Basic {TOKEN}", f"Bearer{TOKEN}", "Bearer "):
        status = call(api, "POST", CHAT, {"messages": HI}, None, {"Authorization": value})[0]
        assert status == 401, value
    assert far.calls == []


def test_no_token_configured_refuses_the_api_with_the_fix(start_api, far):
    api = start_api(token="")
    for token in (None, "anything"):
        status, _, body = chat(api, token=token)
        assert status == 403
        assert "set gateway.token" in body["error"]["message"]
    assert far.calls == []
    assert call(api, "GET", "/healthz", token=None)[0] == 200


# -- limits and malformed bodies --


def test_oversized_body_is_refused_before_it_is_read(start_api, far):
    api = start_api()
    # Headers only, none of the 2 MiB: an answer proves nobody waited for the body.
    answer = raw_exchange(api, AUTH_POST + b"Content-Length: %d\r\n\r\n" % (2 << 20))
    assert answer.startswith(b"HTTP/1.0 413") and b"gateway.maxBodyBytes" in answer
    # A client that sends it all anyway still reads a clean 413 (no connection reset).
    status, _, body = call(api, "POST", CHAT, b"x" * (2 << 20))
    assert (status, "gateway.maxBodyBytes" in body["error"]["message"]) == (413, True)
    assert far.calls == []


@pytest.mark.parametrize(
    ("length_headers", "status"),
    [
        (b"", 411),
        (b"Transfer-Encoding: chunked\r\n", 411),
        (b"Content-Length: 2\r\nContent-Length: 2\r\n", 400),
        (b"Content-Length: +2\r\n", 400),
    ],
    ids=["missing", "chunked", "duplicate", "signed"],
)
def test_content_length_must_be_one_plain_number(start_api, far, length_headers, status):
    api = start_api()
    answer = raw_exchange(api, AUTH_POST + length_headers + b"\r\n")
    assert answer.startswith(f"HTTP/1.0 {status}".encode())
    assert far.calls == []


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
        ({"messages": []}, '"role": "user"'),
        ({"messages": "hello"}, '"role": "user"'),
        ({"messages": [{"role": "assistant", "content": "hi"}]}, '"role": "user"'),
        ({"messages": [{"role": "user", "content": "  "}]}, "no text"),
        ({"messages": [{"role": "user", "content": 42}]}, "content must be"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "content must be"),
        ({"messages": HI, "stream": "yes"}, '"stream" must be true or false'),
    ],
)
def test_malformed_bodies_are_400(start_api, far, body, needle):
    api = start_api()
    status, _, answer = call(api, "POST", CHAT, body)
    assert status == 400
    assert needle in answer["error"]["message"]
    assert far.calls == []


def test_session_names_are_validated(start_api, far):
    api = start_api()
    for user in ["", "a" * 65, "../etc", "a b", "..", ".", "ses/sion", "x\n", 7, ["x"]]:
        status, _, body = chat(api, user=user)
        assert (status, '"user"' in body["error"]["message"]) == (400, True), user
    assert far.calls == []
    good = ["a", "a" * 64, "Team_1.chat-2", "..a"]
    assert [chat(api, user=user)[0] for user in good] == [200] * len(good)
    assert far.calls == [(user, "hello") for user in good]


def test_slow_headers_are_cut_off_while_other_clients_are_served(start_api, audit_file):
    api = start_api(header_timeout=0.5)
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 120 + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", api.port), timeout=5) as slow:
        slow.sendall(request[:1])
        # Another client is served while the slow one is still mid-headers.
        assert call(api, "GET", "/healthz", token=None)[0] == 200
        assert select.select([slow], [], [], 0)[0] == []
        # One byte every 0.1 s: each read is well within the socket timeout, so only a
        # deadline on the whole header phase can end this.
        sent = 1
        while sent < len(request) and not select.select([slow], [], [], 0.1)[0]:
            slow.send(request[sent : sent + 1])
            sent += 1
        assert sent < len(request), "the server waited for headers past header_timeout"
        with suppress(ConnectionResetError):
            assert slow.recv(65536) == b""  # closed without an answer
    events = [json.loads(line) for line in audit_file.read_text().splitlines()]
    cut = [e for e in events if e.get("status") == 408]
    assert cut and cut[0]["decision"] == "rejected" and cut[0]["client"] == "127.0.0.1"


# -- binding --


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "example.com", ""])
def test_non_loopback_bind_without_token_is_refused_with_the_fix(loop, far, host):
    cfg = GatewayConfig(host=host, port=0, token="")
    api = LocalAPI(cfg, loop, far.echo, lambda: HEALTH)
    with pytest.raises(NanobotError, match="refusing to bind the local API") as info:
        api.start()
    assert "set gateway.token" in str(info.value) and "bind 127.0.0.1" in str(info.value)


def test_is_loopback():
    loopback = ["127.0.0.1", "127.8.9.10", "localhost", "LocalHost", "::1", "[::1]"]
    others = ["0.0.0.0", "::", "", "10.0.0.1", "::ffff:10.0.0.1", "localhost.example.com"]
    assert [h for h in [*loopback, "::ffff:127.0.0.1"] if not is_loopback(h)] == []
    assert [h for h in [*others, "127.0.0.1.nip.io"] if is_loopback(h)] == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "127.0.0.2", "::1"])
def test_loopback_bind_without_token_is_allowed(start_api, host):
    api = start_api(host=host, token="")
    connect_to = "127.0.0.1" if host == "localhost" else host
    assert call(api, "GET", "/healthz", token=None, host=connect_to)[0] == 200


def test_wildcard_bind_with_a_token_works(start_api, far):
    api = start_api(host="0.0.0.0")
    status, _, body = chat(api, "over the wire")
    assert status == 200 and body["choices"][0]["message"]["content"].endswith("over the wire")


def test_port_in_use_is_an_operator_error(start_api, loop, far):
    first = start_api()
    cfg = GatewayConfig(host="127.0.0.1", port=first.port, token=TOKEN)
    with pytest.raises(NanobotError, match="gateway.port"):
        LocalAPI(cfg, loop, far.echo, lambda: HEALTH).start()


def test_stop_closes_the_port(start_api):
    api = start_api()
    port = api.port
    api.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_failing_turn_answers_the_generic_apology(start_api, far, caplog):
    api = start_api(run_turn=far.explode)
    with caplog.at_level(logging.ERROR, logger="nanobot.dispatcher"):
        status, _, body = chat(api, user="bob")
    assert status == 200
    assert body["choices"][0]["message"]["content"] == FAILURE_REPLY
    assert "hunter2" not in json.dumps(body)
    assert "hunter2" in caplog.text  # the details go to the log, not to the client


def test_turn_over_the_timeout_is_504(start_api, far):
    api = start_api(run_turn=far.hang, turn_timeout=0.3)
    status, _, body = chat(api)
    assert (status, body["error"]["type"]) == (504, "server_error")


def test_user_over_the_rate_limit_gets_429_with_retry_after(start_api, far, audit_file):
    api = start_api(limiter=RateLimiter(per_minute=1, burst=1))
    first = chat(api, user="dave")
    status, headers, body = chat(api, user="dave")
    other = chat(api, user="erin")  # the limit is per user
    assert (first[0], status, other[0]) == (200, 429, 200)
    assert int(headers["Retry-After"]) >= 1
    assert "rateLimit" in body["error"]["message"]
    assert far.calls == [("dave", "hello"), ("erin", "hello")]
    events = [json.loads(line) for line in audit_file.read_text().splitlines()]
    assert {"event": "rate_limit", "channel": "http", "sender": "dave"}.items() <= next(
        e for e in events if e["event"] == "rate_limit"
    ).items()


def test_turn_after_the_loop_closed_is_503(start_api, far):
    closed = asyncio.new_event_loop()
    closed.close()
    api = start_api()
    api.loop = closed
    status, _, body = chat(api)
    assert (status, far.calls) == (503, [])
    assert "shutting down" in body["error"]["message"]


def test_every_request_is_audited_with_its_decision(start_api, audit_file):
    api = start_api()
    call(api, "GET", "/healthz", token=None)
    chat(api, token="wrong-token-value")
    chat(api, user="carol")
    call(api, "GET", "/nope?key=abc")
    events = [json.loads(line) for line in audit_file.read_text().splitlines()]
    access = [e for e in events if e["event"] == "access"]
    assert [(e["channel"], e["sender"], e["decision"]) for e in access] == [
        ("http", "carol", "allowed")
    ]
    events = [e for e in events if e["event"] == "http_request"]
    assert {e["client"] for e in events} == {"127.0.0.1"}
    seen = [(e["path"], e["status"], e["decision"]) for e in events]
    expected = [("/healthz", 200, "allowed"), (CHAT, 401, "denied"), (CHAT, 200, "allowed")]
    assert seen == [*expected, ("/nope", 404, "rejected")]
    assert TOKEN not in audit_file.read_text()
    assert audit.verify(audit_file).ok
