"""The Telegram channel against FakeTelegram on 127.0.0.1, with the real route (admission,
limiter, audit, durable inbox) ending in a queue instead of the dispatcher."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import stat
import threading
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from fakes.telegram_server import FakeTelegram
from nanobot.channels.base import RATE_NOTICE, SendError
from nanobot.channels.telegram.channel import GREETING, HELP, TelegramChannel
from nanobot.channels.telegram.media import VOICE_UNAVAILABLE
from nanobot.config.schema import Config, TelegramConfig
from nanobot.errors import ConfigError
from nanobot.providers.transcribe import WhisperTranscriber
from nanobot.route.admission import Admission
from nanobot.route.message import OutboundMessage
from nanobot.route.route import Route
from nanobot.route.store import Store
from nanobot.security.audit import configure_audit
from nanobot.security.ratelimit import RateLimiter

FAST = {
    "backoff_base": 0.02,
    "backoff_max": 0.1,
    "send_budget": 5.0,
    "typing_interval": 0.05,
    "typing_delay": 0,
}
WAIT = 5.0


@pytest.fixture
def home(tmp_path, monkeypatch):
    h = tmp_path / "home"
    monkeypatch.setenv("NANOBOT_HOME", str(h))
    configure_audit(Config())
    yield h
    off = Config()
    off.security.audit.enabled = False
    configure_audit(off)


@pytest.fixture
def tg():
    with FakeTelegram() as fake:
        yield fake


def cfg_for(tg: FakeTelegram, allow_from=("42",), **kw) -> TelegramConfig:
    return TelegramConfig(
        enabled=True,
        token=tg.token,
        allow_from=list(allow_from),
        api_base=tg.api_base,
        poll_timeout=1,
        **kw,
    )


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


@asynccontextmanager
async def running(cfg, bus, **kw):
    ch = TelegramChannel(cfg, bus, **{**FAST, **kw})
    task = asyncio.create_task(ch.start())
    try:
        yield ch
    finally:
        await ch.stop()
        await asyncio.wait_for(task, WAIT)


def new_bus(home: Path, limiter: RateLimiter | None = None) -> Route:
    """The real route whose accepted messages land in `route.inbound` (a queue)."""
    inbound: asyncio.Queue = asyncio.Queue()
    route = Route(Admission(limiter), Store(home / "state"), inbound.put_nowait)
    route.inbound = inbound
    return route


async def next_msg(bus: Route):
    return await asyncio.wait_for(bus.inbound.get(), WAIT)


def offset_file(home: Path) -> Path:
    return home / "state" / "telegram_offset"


async def wait_offset(home: Path, offset: int) -> None:
    for _ in range(int(WAIT / 0.02)):
        f = offset_file(home)
        if f.exists() and json.loads(f.read_text())["offset"] >= offset:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"offset {offset} was never persisted")


def audit_events(home: Path, event: str) -> list[dict]:
    lines = (home / "logs" / "audit.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == event]


# ---- inbound ---------------------------------------------------------------------------------


def test_allowed_message_reaches_bus_durably(home, tg):
    bus = new_bus(home)
    uid = tg.push_message(42, "hello there", username="alice")

    async def go():
        async with running(cfg_for(tg), bus) as ch:
            msg = await next_msg(bus)
            await wait_offset(home, uid + 1)
            assert ch.status == "running"
            return msg, ch

    msg, ch = run(go())
    assert (msg.channel, msg.sender_id, msg.chat_id, msg.content) == (
        "telegram",
        "42|alice",
        "42",
        "hello there",
    )
    assert msg.metadata["dedupe_key"] == f"telegram:{uid}"
    assert [m.content for m in Store(home / "state").pending()] == ["hello there"]  # durable
    assert stat.S_IMODE(offset_file(home).stat().st_mode) == 0o600
    polls = [p for m, p in tg.requests if m == "getUpdates"]
    assert polls[0]["allowed_updates"] == ["message", "edited_message", "callback_query"]
    assert "offset" not in polls[0]  # first start: take everything pending, drop nothing
    assert ch.status == "stopped"
    allowed = audit_events(home, "access")
    assert allowed[0]["decision"] == "allowed" and allowed[0]["sender"] == "42|alice"


def test_stranger_and_their_commands_get_nothing(home, tg, caplog):
    bus = new_bus(home)
    for text in ("hi", "/start", "/help", "/reset"):
        tg.push_message(666, text, username="mallory")
    tg.push_message(666, "look", username="mallory", photo=b"\xff\xd8" + os.urandom(2000))
    tg.push_message(42, "ping")

    async def go():
        async with running(cfg_for(tg), bus):
            first = await next_msg(bus)
            await asyncio.sleep(0.1)
            return first, bus.inbound.qsize()

    with caplog.at_level(logging.WARNING, logger="nanobot.channels"):
        first, left = run(go())
    assert first.content == "ping" and left == 0
    assert tg.sent == []
    assert "getFile" not in tg.calls  # a stranger cannot make us download anything
    denied = [r for r in caplog.records if "Access denied" in r.getMessage()]
    assert len(denied) == 5
    assert "Access denied for sender 666|mallory on channel telegram" in denied[0].getMessage()
    assert denied[0].name == "nanobot.channels"
    events = [e for e in audit_events(home, "access") if e["decision"] == "denied"]
    assert len(events) == 5 and all(e["sender"] == "666|mallory" for e in events)


@pytest.mark.parametrize(
    ("allow_from", "user", "username", "allowed"),
    [
        (["42"], 42, "alice", True),
        (["ALICE"], 42, "alice", True),
        (["42|alice"], 42, "alice", True),
        (["42|alice"], 42, "bob", False),
        (["42|alice"], 42, None, False),
        (["alice"], 99, "mallory", False),
        (["4"], 42, None, False),
    ],
)
def test_allow_from_forms(home, tg, allow_from, user, username, allowed):
    bus = new_bus(home)
    uid = tg.push_message(user, "hi", username=username)

    async def go():
        async with running(cfg_for(tg, allow_from), bus):
            await wait_offset(home, uid + 1)
            return bus.inbound.qsize()

    assert run(go()) == (1 if allowed else 0)


def test_group_messages_are_judged_by_their_sender(home, tg):
    bus = new_bus(home)
    tg.push_message(666, "let me in", chat_id=-100123, chat_type="supergroup")
    tg.push_message(42, "hello group", username="alice", chat_id=-100123, chat_type="supergroup")

    async def go():
        async with running(cfg_for(tg, group_policy="open"), bus):
            msg = await next_msg(bus)
            await asyncio.sleep(0.1)
            return msg, bus.inbound.qsize()

    msg, left = run(go())
    assert (msg.sender_id, msg.chat_id, msg.content, left) == (
        "42|alice",
        "-100123",
        "hello group",
        0,
    )
    assert msg.metadata["chat_type"] == "supergroup"


def test_commands_from_allowed_sender(home, tg):
    bus = new_bus(home)
    tg.push_message(42, "/start")
    tg.push_message(42, "/help@nanobot_test_bot")
    tg.push_message(42, "/reset")

    async def go():
        async with running(cfg_for(tg), bus):
            msg = await next_msg(bus)
            return msg, await asyncio.to_thread(tg.wait_for_sent, 2, WAIT)

    msg, sent = run(go())
    assert msg.content == "/reset"  # the agent loop resets the session
    assert [s["visible"] for s in sent] == [GREETING, HELP]


def test_rate_limited_sender_gets_one_notice(home, tg, caplog):
    bus = new_bus(home, RateLimiter(per_minute=1, burst=1))
    uids = [tg.push_message(42, f"m{i}") for i in range(4)]

    async def go():
        async with running(cfg_for(tg), bus):
            await wait_offset(home, uids[-1] + 1)
            return bus.inbound.qsize()

    with caplog.at_level(logging.WARNING, logger="nanobot.channels"):
        assert run(go()) == 1
    assert [s["visible"] for s in tg.sent] == [RATE_NOTICE]
    hits = audit_events(home, "rate_limit")
    assert len(hits) == 3 and hits[0]["sender"] == "42" and hits[0]["kind"] == "message"


def test_offset_survives_restart_and_pending_updates_are_delivered(home, tg):
    first = [tg.push_message(42, f"before {i}") for i in range(3)]

    async def phase(expected: int):
        bus = new_bus(home)
        async with running(cfg_for(tg), bus):
            got = [(await next_msg(bus)).content for _ in range(expected)]
            await asyncio.sleep(0.2)  # anything re-delivered would arrive now
            return got, bus.inbound.qsize()

    assert run(phase(3)) == (["before 0", "before 1", "before 2"], 0)
    polls_before = tg.calls.count("getUpdates")
    tg.push_message(42, "while down")  # the gateway is stopped
    assert run(phase(1)) == (["while down"], 0)
    restart_poll = [p for m, p in tg.requests if m == "getUpdates"][polls_before]
    assert restart_poll["offset"] == first[-1] + 1


def test_offset_of_another_bot_is_ignored(home, tg):
    offset_file(home).parent.mkdir(parents=True)
    offset_file(home).write_text(json.dumps({"bot_id": "555", "offset": 10**9}))
    bus = new_bus(home)
    tg.push_message(42, "hi")

    async def go():
        async with running(cfg_for(tg), bus):
            return (await next_msg(bus)).content

    assert run(go()) == "hi"


def test_malformed_updates_are_skipped(home, tg, caplog):
    bus = new_bus(home)
    tg.push_update({"message": {"text": "no sender or chat"}})
    tg.push_update({"message": "not an object"})
    tg.push_update({"message": {"from": {"id": "42"}, "chat": {"id": 42}, "text": "str id"}})
    tg.push_update({"message": {"from": {"id": 42}, "chat": {"id": 42}, "text": ["x"]}})
    tg.push_update({"message": {"from": {"id": 42}, "chat": {"id": 42}, "photo": "x"}})
    good = tg.push_message(42, "fine", edited=True)

    async def go():
        async with running(cfg_for(tg), bus):
            msg = await next_msg(bus)
            await wait_offset(home, good + 1)
            return msg, bus.inbound.qsize()

    with caplog.at_level(logging.WARNING, logger="nanobot.channels"):
        msg, left = run(go())
    assert msg.content == "[edited] fine" and left == 0
    assert sum("malformed Telegram update" in r.getMessage() for r in caplog.records) == 5


# ---- media -----------------------------------------------------------------------------------


def test_photo_is_downloaded_under_a_generated_name(home, tg):
    bus = new_bus(home)
    photo = b"\xff\xd8\xff" + os.urandom(50_000)
    tg.push_message(42, "what is this?", photo=photo)
    tg.push_message(42, "and this", document=b"%PDF-1.4 x", file_name="../../etc/evil.sh")

    async def go():
        async with running(cfg_for(tg), bus):
            return await next_msg(bus), await next_msg(bus)

    img, doc = run(go())
    (path,) = img.media
    media = home / "media"
    assert Path(path).parent == media and re.fullmatch(r"[0-9a-f]{32}\.jpg", Path(path).name)
    assert Path(path).read_bytes() == photo  # the largest size, not the thumbnail
    assert img.content == f"what is this?\n[image: {path}]"
    assert stat.S_IMODE(Path(path).stat().st_mode) == 0o600
    assert stat.S_IMODE(media.stat().st_mode) == 0o700
    (doc_path,) = doc.media
    assert Path(doc_path).parent == media and re.fullmatch(
        r"[0-9a-f]{32}\.pdf", Path(doc_path).name
    )
    assert doc.content == f"and this\n[file: {doc_path}]"


def test_oversized_files_are_refused(home, tg):
    bus = new_bus(home)
    tg.push_message(42, "big", document=os.urandom(5000))
    tg.push_message(42, "liar", document=os.urandom(5000), file_size=100)

    async def go():
        async with running(cfg_for(tg, max_media_bytes=1000), bus):
            return await next_msg(bus), await next_msg(bus)

    big, liar = run(go())
    for msg in (big, liar):
        assert msg.media == []
        assert "refused: larger than channels.telegram.maxMediaBytes (1000 bytes)" in msg.content
    assert tg.calls.count("getFile") == 1  # the declared size was enough for the first
    assert tg.calls.count("file") == 1  # the second was cut while streaming
    assert not any((home / "media").iterdir())  # no partial file left


class _Whisper(BaseHTTPRequestHandler):
    seen: list = []

    def log_message(self, *a):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append((self.path, self.headers.get("Authorization"), body))
        out = json.dumps({"text": " turn on the lights "}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


def test_voice_transcribed_when_configured_else_explained(home, tg):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Whisper)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    key = "gsk_" + "k" * 40
    whisper = WhisperTranscriber(key, f"http://127.0.0.1:{server.server_address[1]}/openai/v1")
    tg.push_message(42, voice=b"OggS" + os.urandom(3000))

    async def go(**kw):
        bus = new_bus(home)
        async with running(cfg_for(tg), bus, **kw):
            return await next_msg(bus)

    try:
        heard = run(go(transcriber=whisper))
        tg.push_message(42, voice=b"OggS" + os.urandom(3000))
        unheard = run(go())
    finally:
        server.shutdown()
        server.server_close()
    assert heard.content == "[voice message] turn on the lights"
    path, auth, body = _Whisper.seen[0]
    assert path == "/openai/v1/audio/transcriptions" and auth == f"Bearer {key}"
    assert b'name="model"' in body and b"whisper-large-v3" in body
    assert unheard.content == VOICE_UNAVAILABLE and unheard.media == []


# ---- outbound --------------------------------------------------------------------------------


def send(tg, home, content, **kw):
    async def go():
        ch = TelegramChannel(cfg_for(tg), new_bus(home), **{**FAST, **kw})
        await ch.send(OutboundMessage("telegram", "42", content))

    run(go())


def test_send_renders_html(home, tg):
    send(tg, home, "**Done**: `x < y`")
    (sent,) = tg.sent
    assert sent["parse_mode"] == "HTML" and sent["text"] == "<b>Done</b>: <code>x &lt; y</code>"
    assert sent["chat_id"] == "42"


def test_send_waits_out_429(home, tg):
    tg.fail_next("sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1)
    send(tg, home, "hello")
    assert [s["visible"] for s in tg.sent] == ["hello"]
    assert tg.calls.count("sendMessage") == 2


@pytest.mark.parametrize("fault", ["500", "drop"])
def test_send_retries_server_errors_and_dropped_connections(home, tg, fault, caplog):
    if fault == "drop":
        tg.drop_next("sendMessage", count=2)
    else:
        tg.fail_next("sendMessage", 500, "Internal Server Error", count=2)
    with caplog.at_level(logging.DEBUG, logger="nanobot"):
        send(tg, home, "hello")
    assert [s["visible"] for s in tg.sent] == ["hello"]
    assert tg.calls.count("sendMessage") == 3
    secret = tg.token.split(":")[1]
    assert secret not in caplog.text and "retrying" in caplog.text


def test_send_gives_up_after_its_budget(home, tg):
    tg.fail_next("sendMessage", 502, "Bad Gateway", count=1000)
    with pytest.raises(SendError, match="502"):
        send(tg, home, "hello", send_budget=0.3)
    assert 2 <= tg.calls.count("sendMessage") < 100
    tg.clear_faults()
    tg.fail_next("sendMessage", 400, "Bad Request: chat not found")
    with pytest.raises(SendError, match="chat not found"):
        send(tg, home, "hello")


def test_long_reply_is_split(home, tg):
    text = "\n\n".join(f"Paragraph {i}: " + "lorem ipsum & <dolor> " * 40 for i in range(30))
    send(tg, home, text)
    assert len(tg.sent) >= 6
    assert all(len(s["visible"]) <= 4096 for s in tg.sent)
    assert "\n\n".join(s["visible"] for s in tg.sent) == text


def test_refused_html_falls_back_to_plain_text(home, tg):
    tg.fail_next(
        "sendMessage", 400, 'Bad Request: can\'t parse entities: Unsupported start tag "x"'
    )
    send(tg, home, "**bold** move")
    (sent,) = tg.sent
    assert "parse_mode" not in sent and sent["text"] == "**bold** move"


def test_typing_until_stopped(home, tg):
    async def go():
        ch = TelegramChannel(cfg_for(tg), new_bus(home), **FAST)
        ch.typing.show("42")
        await asyncio.to_thread(tg.wait_for, lambda: len(tg.actions) >= 3, WAIT, "3 actions")
        ch.typing.hide("42")
        stopped_at = len(tg.actions)
        await asyncio.sleep(0.3)  # six intervals
        return stopped_at

    stopped_at = run(go())
    assert len(tg.actions) <= stopped_at + 1  # at most one call was already in flight
    assert tg.actions[0] == {"chat_id": "42", "action": "typing"}


# ---- faults while polling --------------------------------------------------------------------


def test_conflict_409_is_logged_and_polling_goes_on(home, tg, caplog):
    bus = new_bus(home)
    tg.fail_next("getUpdates", 409, "Conflict: terminated by other getUpdates request", count=2)
    tg.drop_next("getUpdates")
    tg.push_message(42, "still here")

    async def go():
        async with running(cfg_for(tg), bus):
            return (await next_msg(bus)).content

    with caplog.at_level(logging.WARNING):
        assert run(go()) == "still here"
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("another instance is polling this bot" in m and "deleteWebhook" in m for m in errors)
    assert tg.token.split(":")[1] not in caplog.text


def test_two_pollers_on_one_bot_report_the_conflict(home, tg, caplog):
    async def go():
        async with running(cfg_for(tg), new_bus(home)), running(cfg_for(tg), new_bus(home)):
            await asyncio.to_thread(
                tg.wait_for, lambda: tg.calls.count("getUpdates") >= 6, WAIT, "polls"
            )

    with caplog.at_level(logging.ERROR, logger="nanobot.channels"):
        run(go())
    assert any("another instance is polling this bot" in r.getMessage() for r in caplog.records)


def test_rejected_token_names_the_config_key(home, tg):
    cfg = cfg_for(tg)
    cfg.token = "123456789:WrongWrongWrongWrongWrongWrongWrong1"

    async def go():
        ch = TelegramChannel(cfg, new_bus(home), **FAST)
        with pytest.raises(ConfigError) as e:
            await ch.start()
        return str(e.value), ch.status

    message, status = run(go())
    assert "channels.telegram.token" in message and "Wrong" not in message
    assert status.startswith("error:") and "Wrong" not in status


def test_proxy_setting_is_used(home, tg):
    cfg = cfg_for(tg, proxy=tg.api_base)
    cfg.api_base = "http://api.telegram.invalid"
    bus = new_bus(home)
    tg.push_message(42, "via proxy")

    async def go():
        async with running(cfg, bus):
            return (await next_msg(bus)).content

    assert run(go()) == "via proxy" and tg.proxied


def test_files_of_a_message_are_uploaded_as_documents(home, tg, tmp_path):
    doc = tmp_path / "notes.md"
    doc.write_bytes(b"# notes\n\x00binary-safe")

    async def go():
        ch = TelegramChannel(cfg_for(tg), new_bus(home), **FAST)
        await ch.send(OutboundMessage("telegram", "42", "the notes", media=[str(doc)]))

    run(go())
    assert [m["visible"] for m in tg.sent] == ["the notes"]
    assert tg.documents == [{"chat_id": "42", "name": "notes.md", "data": doc.read_bytes()}]
