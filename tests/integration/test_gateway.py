"""The real `nanobot gateway` process with a fake Telegram Bot API and a scripted model server."""

from __future__ import annotations

import http.client
import json
import os
import signal
import time
from collections import Counter

import pytest

from fakes.llm_server import ScriptedLLMServer, last_user_text, reply
from fakes.telegram_server import FakeTelegram
from harness import GatewayProcess, thread_arenas
from nanobot.route.store import Store

KEY = "sk-test-gateway-secret-0123456789"
GW_TOKEN = "gw-token-0123456789abcdefghij"
ALLOWED = 111


@pytest.fixture
def servers():
    with ScriptedLLMServer("openai") as llm, FakeTelegram() as tg:
        llm.respond_with(lambda body: reply(f"echo: {last_user_text(body)}"))
        yield llm, tg


def gateway_config(llm, tg, **overrides) -> dict:
    cfg = {
        "providers": {"openai": {"apiKey": KEY, "apiBase": llm.url}},
        "agents": {"defaults": {"model": "gpt-test"}},
        "channels": {
            "sendProgress": False,  # these tests watch the final replies; see test_telegram_progress
            "telegram": {
                "enabled": True,
                "token": tg.token,
                "apiBase": tg.api_base,
                "allowFrom": [str(ALLOWED)],
                "pollTimeout": 1,
            },
        },
        "gateway": {"port": 0, "token": GW_TOKEN, "shutdownTimeout": 20},
    }
    for path, value in overrides.items():
        node = cfg
        *parents, leaf = path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return cfg


def texts_for(tg, chat_id) -> list[str]:
    return [m["text"] for m in tg.sent if str(m["chat_id"]) == str(chat_id)]


def test_allowed_user_gets_a_reply_stranger_gets_silence(nb, servers, start):
    llm, tg = servers
    start(gateway_config(llm, tg))
    tg.push_message(ALLOWED, "hello there", username="alice")
    tg.push_message(222, "let me in", username="mallory")
    tg.wait_for_sent(1, timeout=10)
    time.sleep(1.0)
    assert texts_for(tg, ALLOWED) == ["echo: hello there"]
    assert texts_for(tg, 222) == []
    assert [last_user_text(r.json) for r in llm.requests] == ["hello there"]
    log = nb.log_text()
    assert "Access denied" in log and "222" in log
    audit = [
        json.loads(line) for line in (nb.path / "logs" / "audit.jsonl").read_text().splitlines()
    ]
    decisions = {
        (e.get("sender", "").split("|")[0], e.get("decision"))
        for e in audit
        if e["event"] == "access"
    }
    assert ("222", "denied") in decisions and (str(ALLOWED), "allowed") in decisions


def test_commands_pass_the_same_check(nb, servers, start):
    llm, tg = servers
    start(gateway_config(llm, tg))
    tg.push_message(ALLOWED, "remember me")
    tg.wait_for_sent(1, timeout=10)
    for cmd in ("/reset", "/start", "/help"):
        tg.push_message(333, cmd)
    time.sleep(1.5)
    assert texts_for(tg, 333) == []
    sessions = list((nb.path / "sessions").glob("*.jsonl"))
    assert len(sessions) == 1  # the stranger's /reset touched nothing
    tg.push_message(ALLOWED, "/reset")
    tg.wait_for_sent(2, timeout=10)
    assert "afresh" in texts_for(tg, ALLOWED)[-1]
    assert not list((nb.path / "sessions").glob("*.jsonl"))


def test_fifty_chats_are_answered_concurrently(nb, servers, start):
    llm, tg = servers
    llm.respond_with(lambda body: reply(f"echo: {last_user_text(body)}", delay=0.5))
    chats = list(range(1000, 1050))
    start(
        gateway_config(
            llm,
            tg,
            **{
                "agents.defaults.maxConcurrentTurns": 64,
                "channels.telegram.allowFrom": [str(c) for c in chats],
                "security.rateLimit.messagesPerMinute": 0,
            },
        )
    )
    for c in chats:
        tg.push_message(c, f"message {c}")
    tg.wait_for_sent(50, timeout=30)
    for c in chats:
        assert texts_for(tg, c) == [f"echo: message {c}"]
    assert llm.max_concurrent >= 25  # turns overlapped instead of queueing one by one


def test_one_chat_is_answered_in_order(nb, servers, start):
    llm, tg = servers
    llm.respond_with(lambda body: reply(f"echo: {last_user_text(body)}", delay=0.2))
    start(gateway_config(llm, tg, **{"security.rateLimit.messagesPerMinute": 0}))
    for i in range(5):
        tg.push_message(ALLOWED, f"step {i}")
    tg.wait_for_sent(5, timeout=20)
    assert texts_for(tg, ALLOWED) == [f"echo: step {i}" for i in range(5)]
    assert llm.max_concurrent == 1


def test_rate_limited_flood_does_not_delay_another_chat(nb, servers, start):
    llm, tg = servers
    llm.respond_with(lambda body: reply(f"echo: {last_user_text(body)}", delay=0.3))
    start(
        gateway_config(
            llm,
            tg,
            **{
                "channels.telegram.allowFrom": [str(ALLOWED), "444"],
                "security.rateLimit.messagesPerMinute": 1,
                "security.rateLimit.burst": 2,
            },
        )
    )
    for i in range(15):
        tg.push_message(ALLOWED, f"flood {i}")
    tg.push_message(444, "just once")
    tg.wait_for(lambda: texts_for(tg, 444), timeout=10, what="reply to the other chat")
    time.sleep(1.5)
    flood = texts_for(tg, ALLOWED)
    assert flood.count("echo: flood 0") == 1 and flood.count("echo: flood 1") == 1
    notices = [t for t in flood if "too fast" in t]
    assert len(notices) == 1 and len(flood) == 3
    assert texts_for(tg, 444) == ["echo: just once"]
    assert "rate_limit" in (nb.path / "logs" / "audit.jsonl").read_text()


def test_kill_9_with_messages_pending_then_every_message_answered_once(nb, servers, start):
    llm, tg = servers
    llm.respond_with(lambda body: reply(f"echo: {last_user_text(body)}", delay=3))
    chats = [ALLOWED, 112, 113, 114]
    cfg = gateway_config(llm, tg, **{"channels.telegram.allowFrom": [str(c) for c in chats]})
    gw = start(cfg)
    for c in chats:
        tg.push_message(c, f"before crash {c}")
    llm.wait_for_requests(len(chats), timeout=10)
    gw.proc.send_signal(signal.SIGKILL)
    gw.wait(10)
    assert tg.sent == []
    tg.push_message(ALLOWED, "while down")
    llm.respond_with(lambda body: reply(f"echo: {last_user_text(body)}"))
    start(cfg)
    tg.wait_for_sent(len(chats) + 1, timeout=20)
    time.sleep(2)
    counts = Counter((str(m["chat_id"]), m["text"]) for m in tg.sent)
    assert all(n == 1 for n in counts.values()), counts
    for c in chats:
        assert f"echo: before crash {c}" in texts_for(tg, c)
    assert "echo: while down" in texts_for(tg, ALLOWED)
    store = Store(nb.path / "state", compact=False)
    assert (store.pending(), store.unsent()) == ([], [])


def test_sigterm_during_a_turn_still_sends_the_reply_and_exits_0(nb, servers, start):
    llm, tg = servers
    llm.respond_with(lambda body: reply(f"echo: {last_user_text(body)}", delay=1.5))
    gw = start(gateway_config(llm, tg))
    tg.push_message(ALLOWED, "finish me")
    llm.wait_for_requests(1, timeout=10)
    gw.signal(signal.SIGTERM)
    assert gw.wait(30) == 0
    assert texts_for(tg, ALLOWED) == ["echo: finish me"]
    assert {"chat_id": str(ALLOWED), "action": "typing"} in tg.actions  # a slow reply shows typing
    assert "gateway stopped" in gw.output()


def test_telegram_faults_do_not_lose_the_reply(nb, servers, start):
    llm, tg = servers
    start(gateway_config(llm, tg))
    tg.fail_next("sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1)
    tg.fail_next("sendMessage", 502, "Bad Gateway")
    tg.drop_next("getUpdates")
    tg.push_message(ALLOWED, "through the storm")
    tg.wait_for_sent(1, timeout=20)
    assert texts_for(tg, ALLOWED) == ["echo: through the storm"]


def test_long_replies_are_split_and_html_falls_back_to_plain_text(nb, servers, start):
    llm, tg = servers
    long_text = "\n\n".join(f"Paragraph {i}: " + "word " * 150 for i in range(12))
    llm.script([reply(long_text), reply("**bold** reply")])
    start(gateway_config(llm, tg))
    tg.push_message(ALLOWED, "long please")
    tg.wait_for(lambda: len(texts_for(tg, ALLOWED)) >= 3, timeout=15, what="split reply")
    parts = texts_for(tg, ALLOWED)
    assert all(len(p) <= 4096 for p in parts)
    assert "".join(parts).replace("\n", "").replace(" ", "") == long_text.replace("\n", "").replace(
        " ", ""
    )
    before = len(tg.sent)
    tg.fail_next("sendMessage", 400, "Bad Request: can't parse entities: unexpected end tag")
    tg.push_message(ALLOWED, "bold please")
    tg.wait_for_sent(before + 1, timeout=15)
    last = tg.sent[-1]
    assert "bold" in last["text"] and last.get("parse_mode") in (None, "")


def test_local_api_auth_and_health_through_the_gateway(nb, servers, start):
    llm, tg = servers
    gw = start(gateway_config(llm, tg))

    def call(method, path, body=None, token=None):
        conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        conn.request(
            method, path, body=json.dumps(body) if body is not None else None, headers=headers
        )
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")

    status, health = call("GET", "/healthz")
    assert status == 200 and health["channels"]["telegram"] in ("running", "starting")
    assert tg.token not in json.dumps(health) and KEY not in json.dumps(health)
    body = {"messages": [{"role": "user", "content": "via api"}], "user": "tester"}
    assert call("POST", "/v1/chat/completions", body)[0] == 401
    assert call("POST", "/v1/chat/completions", body, token=GW_TOKEN[:-1])[0] == 401
    status, answer = call("POST", "/v1/chat/completions", body, token=GW_TOKEN)
    assert status == 200 and answer["choices"][0]["message"]["content"] == "echo: via api"
    assert (nb.path / "logs" / "audit.jsonl").read_text().count('"http_request"') >= 4


def test_refuses_a_public_bind_without_a_token(nb, servers):
    llm, tg = servers
    nb.write_config(gateway_config(llm, tg, **{"gateway.host": "0.0.0.0", "gateway.token": ""}))
    gw = GatewayProcess(nb)
    code = gw.wait(30)
    assert code != 0
    out = gw.output()
    assert "gateway.token" in out and "Traceback" not in out


def test_open_channel_warns_at_start(nb, servers, start):
    llm, tg = servers
    gw = start(gateway_config(llm, tg, **{"channels.telegram.allowFrom": []}))
    assert "open to everyone" in gw.output()


def test_systemd_notify_ready_watchdog_stopping(nb, servers, start, tmp_path):
    import os
    import socket

    llm, tg = servers
    sock_path = nb.base / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    os.chmod(sock_path, 0o777)
    sock.settimeout(10)
    try:
        gw = start(
            gateway_config(llm, tg),
            env={"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "400000"},
        )
        seen = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not ({"READY=1", "WATCHDOG=1"} <= set(seen)):
            seen.extend(sock.recv(4096).decode().split("\n"))
        assert "READY=1" in seen and "WATCHDOG=1" in seen
        gw.signal(signal.SIGTERM)
        while "STOPPING=1" not in seen:
            seen.extend(sock.recv(4096).decode().split("\n"))
        assert gw.wait(30) == 0
    finally:
        sock.close()


def test_secrets_absent_from_everything_the_gateway_wrote(nb, servers, start):
    llm, tg = servers
    gw = start(gateway_config(llm, tg))
    tg.push_message(ALLOWED, "hi")
    tg.wait_for_sent(1, timeout=10)
    gw.signal(signal.SIGTERM)
    gw.wait(30)
    written = nb.all_written_text() + gw.output()
    for secret in (KEY, tg.token, GW_TOKEN):
        assert secret not in written


def test_a_failing_channel_is_restarted_by_its_supervisor(nb, servers, start):
    llm, tg = servers
    tg.fail_next("getMe", 401, "Unauthorized", count=2)  # e.g. a token being rotated
    tg.push_message(ALLOWED, "are you there?")
    gw = start(gateway_config(llm, tg))
    tg.wait_for_sent(1, timeout=20)
    assert texts_for(tg, ALLOWED) == ["echo: are you there?"]
    out = gw.output()
    assert out.count("channel telegram failed") == 2 and "restarting in" in out
    assert "channels.telegram.token" in out and tg.token not in out


def test_the_agent_can_read_a_document_a_user_sent(nb, servers, start):
    import re

    from fakes.llm_server import tool_call

    llm, tg = servers

    def model(body):
        last = body["messages"][-1]
        if last["role"] == "tool":
            return reply(f"the file says: {last['content']}")
        path = re.search(r"\[file: ([^\]]+)\]", last_user_text(body)).group(1)
        return tool_call("read_file", {"path": path})

    llm.respond_with(model)
    start(gateway_config(llm, tg))  # restrictToWorkspace stays on (the default)
    tg.push_message(ALLOWED, "summarise this", document=b"meeting at noon\n", file_name="notes.txt")
    tg.wait_for_sent(1, timeout=15)
    assert "meeting at noon" in texts_for(tg, ALLOWED)[0]


def test_api_requests_reuse_threads_and_two_malloc_arenas(nb, servers, start):
    """Each API request used to get a new thread, and each thread a malloc arena of its own
    whose freed pages stayed resident: RSS crept up with every message."""
    from concurrent.futures import ThreadPoolExecutor

    from nanobot.memtune import ARENAS, NO_TCACHE

    llm, tg = servers
    gw = start(gateway_config(llm, tg, **{"security.rateLimit.messagesPerMinute": 0}))

    def post(i: int) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
        body = json.dumps({"user": f"u{i % 7}", "messages": [{"role": "user", "content": "x"}]})
        headers = {"Authorization": f"Bearer {GW_TOKEN}", "Content-Type": "application/json"}
        conn.request("POST", "/v1/chat/completions", body, headers)
        status = conn.getresponse().status
        conn.close()
        return status

    def tasks() -> set[str]:
        return set(os.listdir(f"/proc/{gw.proc.pid}/task"))

    idle = tasks()
    with ThreadPoolExecutor(12) as pool:
        assert set(pool.map(post, range(120))) == {200}
        served = tasks()
        assert set(pool.map(post, range(120))) == {200}
    # The threads that served the first round stay and serve the second: hardly any new.
    assert len(served - idle) >= 8
    assert served <= tasks() and len(tasks() - served) <= 2
    assert thread_arenas(gw.proc.pid) <= ARENAS - 1  # the main arena is the other one
    assert _environ(gw.proc.pid)["GLIBC_TUNABLES"] == NO_TCACHE  # started again, same PID


def test_an_operators_thread_cache_setting_is_kept(servers, start):
    llm, tg = servers
    mine = "glibc.malloc.tcache_count=3"
    gw = start(gateway_config(llm, tg), env={"GLIBC_TUNABLES": mine})
    assert _environ(gw.proc.pid)["GLIBC_TUNABLES"] == mine


def _environ(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as f:
        pairs = [item.decode().split("=", 1) for item in f.read().split(b"\0") if item]
    return dict(pairs)
