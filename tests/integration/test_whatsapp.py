"""The real gateway ↔ the real Node.js bridge (WhatsApp side faked) ↔ a scripted model server."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter

import pytest

from fakes.llm_server import ScriptedLLMServer, last_user_text, reply
from fakes.whatsapp_bridge import BridgeProcess, text_message
from harness import GatewayProcess

KEY = "sk-test-whatsapp-secret-0123456789"
TOKEN = "wa-bridge-token-0123456789abcdef"
ALICE = "4915112345678"
ALICE_JID = f"{ALICE}@s.whatsapp.net"
BOB_LID = "123456789012345@lid"  # Bob's phone is 4930111222, allowed
BOB_JID = "4930111222@s.whatsapp.net"


@pytest.fixture
def llm():
    with ScriptedLLMServer("openai") as server:
        server.respond_with(lambda body: reply(f"echo: {last_user_text(body)}"))
        yield server


@pytest.fixture
def bridge():
    b = BridgeProcess(TOKEN)
    b.start()
    yield b
    b.cleanup()


def config(llm, bridge, token: str = TOKEN, **whatsapp) -> dict:
    return {
        "providers": {"openai": {"apiKey": KEY, "apiBase": llm.url}},
        "agents": {"defaults": {"model": "gpt-test"}},
        "channels": {
            "whatsapp": {
                "enabled": True,
                "bridgeUrl": bridge.url,
                "bridgeToken": token,
                "allowFrom": [f"+{ALICE}", "4930111222"],
                "manageBridge": False,
                **whatsapp,
            }
        },
        "gateway": {"port": 0, "token": "gw-token-0123456789abcdefghij"},
    }


def wait_for(cond, timeout: float = 15, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def connected(nb) -> bool:
    return "connected to the WhatsApp bridge" in nb.log_text()


def texts(bridge, to: str) -> list[str]:
    return [m["text"] for m in bridge.sent() if m["to"] == to]


def test_allowed_number_and_resolved_lid_answered_stranger_denied(nb, llm, bridge, start):
    start(config(llm, bridge))
    wait_for(lambda: connected(nb), what="the channel to connect")
    bridge.inject(text_message("A1", ALICE_JID, "hello from alice"))
    bridge.inject(text_message("B1", BOB_LID, "hello from bob", senderPn=BOB_JID))
    bridge.inject(text_message("M1", "4470000000@s.whatsapp.net", "let me in"))
    bridge.inject(text_message("U1", "999999@lid", "who am i"))
    bridge.wait_sent(2)
    time.sleep(1.0)
    assert texts(bridge, ALICE_JID) == ["echo: hello from alice"]
    assert texts(bridge, BOB_LID) == ["echo: hello from bob"]
    assert len(bridge.sent()) == 2  # the stranger and the unresolved LID got nothing
    assert sorted(last_user_text(r.json) for r in llm.requests) == [
        "hello from alice",
        "hello from bob",
    ]
    log = nb.log_text()
    assert "Access denied" in log and "4470000000" in log
    assert 'add "999999@lid" to channels.whatsapp.allowFrom' in log
    assert TOKEN not in log and TOKEN not in nb.all_written_text()
    audit = [json.loads(x) for x in (nb.path / "logs" / "audit.jsonl").read_text().splitlines()]
    denied = {e.get("sender") for e in audit if e.get("decision") == "denied"}
    assert any("4470000000" in str(s) for s in denied)


def test_wrong_token_is_refused_and_logged(nb, llm, bridge, start):
    start(config(llm, bridge, token="not-the-bridge-token-0123456789"))
    wait_for(lambda: "refused the token" in nb.log_text(), what="the refusal in the gateway log")
    assert "authentication failed (wrong token)" in bridge.log()
    bridge.inject(text_message("A1", ALICE_JID, "anyone there?"))
    time.sleep(1.0)
    assert bridge.sent() == [] and llm.requests == []
    assert "not-the-bridge-token" not in nb.log_text()


def test_bridge_restart_loses_no_message(nb, llm, bridge, start):
    llm.respond_with(lambda body: reply(f"echo: {last_user_text(body)}", delay=2))
    start(config(llm, bridge))
    wait_for(lambda: connected(nb), what="the channel to connect")
    bridge.inject(text_message("R1", ALICE_JID, "before restart"))
    llm.wait_for_requests(1, timeout=10)
    bridge.kill(signal.SIGKILL)  # the reply is not sent yet: it must wait for the new bridge
    bridge.start()
    bridge.inject(text_message("R2", ALICE_JID, "after restart"))
    bridge.wait_sent(2, timeout=30)
    time.sleep(1.0)
    assert Counter(texts(bridge, ALICE_JID)) == Counter(
        ["echo: before restart", "echo: after restart"]
    )


def test_kill_9_of_the_gateway_then_each_message_answered_once(nb, llm, bridge, start):
    llm.respond_with(lambda body: reply(f"echo: {last_user_text(body)}", delay=3))
    cfg = config(llm, bridge)
    gw = start(cfg)
    wait_for(lambda: connected(nb), what="the channel to connect")
    bridge.inject(*(text_message(f"K{i}", ALICE_JID, f"pending {i}") for i in range(3)))
    llm.wait_for_requests(1, timeout=10)
    gw.proc.send_signal(signal.SIGKILL)
    gw.wait(10)
    bridge.inject(text_message("K9", ALICE_JID, "while down"))
    llm.respond_with(lambda body: reply(f"echo: {last_user_text(body)}"))
    start(cfg)
    bridge.wait_sent(4, timeout=30)
    time.sleep(2)
    counts = Counter(texts(bridge, ALICE_JID))
    assert counts == Counter([f"echo: pending {i}" for i in range(3)] + ["echo: while down"])


def test_channels_status_shows_reachability_and_link_state(nb, llm, bridge):
    nb.write_config(config(llm, bridge))
    out = nb.run("channels", "status")
    assert out.returncode == 0, out.stderr
    assert "whatsapp: enabled, 2 allowed senders" in out.stdout
    assert "link:    open as +15550000000" in out.stdout
    nb.write_config(config(llm, bridge, token="wrong-token-0123456789abcdef"))
    assert "refused the token (4001)" in nb.run("channels", "status").stdout
    bridge.kill()
    assert "bridge unreachable" in nb.run("channels", "status").stdout
    assert TOKEN not in out.stdout + out.stderr


def test_the_gateway_runs_and_restarts_a_managed_bridge(nb, llm, start):
    probe = BridgeProcess(TOKEN)  # only for its port, fake-WhatsApp dir and helpers
    try:
        nb.chown(probe.dir)
        cfg = config(llm, probe, manageBridge=True)
        nb.write_config(cfg)
        gw = GatewayProcess(nb, env={"BRIDGE_FAKE_WHATSAPP": str(probe.dir)}).wait_ready()
        try:
            wait_for(lambda: connected(nb), what="the managed bridge")
            probe.inject(text_message("G1", ALICE_JID, "managed"))
            probe.wait_sent(1)
            assert texts(probe, ALICE_JID) == ["echo: managed"]
            auth = nb.path / "whatsapp-auth"
            assert auth.stat().st_mode & 0o777 == 0o700
            assert all(p.stat().st_mode & 0o777 == 0o600 for p in auth.iterdir())
        finally:
            gw.signal(signal.SIGTERM)
            assert gw.wait(30) == 0
        assert "WhatsApp bridge started" in nb.log_text()
    finally:
        probe.cleanup()
