"""A host with WhatsApp enabled: the Node.js bridge as its systemd unit on Debian's own Node.js,
the gateway connected to it with the token from an encrypted credential, its port reachable
from the host's loopback only, and one message end to end.

The bridge never contacts WhatsApp: deploy/test/whatsapp-fake.conf (a drop-in that run.sh
writes before the first converge, never part of the role) sets BRIDGE_FAKE_WHATSAPP, the
switch of the bridge's own tests. Its fake WhatsApp takes injected messages on a control port
on the container's 127.0.0.1 and appends what the bridge sends to sent.jsonl, both in
FAKE_DIR. A stranger's message is sent before an allowed one: the channel handles messages in
order, so once the allowed sender has the reply, the stranger's message was decided too.
"""

from __future__ import annotations

import json
import re
import time
import uuid

import pytest

pytestmark = pytest.mark.deploy

UNIT = "nanobot-whatsapp-bridge.service"
FAKE_DIR = "/var/lib/nanobot-test-whatsapp"
BRIDGE_PORT = 3001
FINAL = "probe finished: "  # deploy/test/fake_llm.py's final answer
# Debian's own nodejs: 18.x in Debian 12, 20.x in Debian 13.
NODE_MAJOR = {"12": 18, "13": 20}
EXPOSURE_MAX = {"12": 2.0, "13": 2.0}


def _wait(probe, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (got := probe()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.5)
    return got


def _journal(host, unit: str, since: str = "") -> str:
    since_arg = f" --since '{since}'" if since else ""
    return host.check_output(f"journalctl -u {unit} --no-pager -o cat{since_arg}")


def _debian_major(host) -> str:
    return host.file("/etc/debian_version").content_string.split(".")[0].strip()


def _jid(number: str) -> str:
    return re.sub(r"\D", "", number) + "@s.whatsapp.net"


def _inject(host, sender_jid: str, text: str) -> None:
    """One Baileys-shaped text message from sender_jid, through the fake's control port."""
    port = host.file(f"{FAKE_DIR}/control-port").content_string.strip()
    message = {
        "key": {"remoteJid": sender_jid, "fromMe": False, "id": uuid.uuid4().hex[:16].upper()},
        "message": {"conversation": text},
        "pushName": "Deploy Test",
        "messageTimestamp": int(time.time()),
    }
    script = (
        "import sys, urllib.request as u\n"
        "req = u.Request(sys.argv[1], data=sys.argv[2].encode(), "
        "headers={'Content-Type': 'application/json'})\n"
        "u.urlopen(req, timeout=10).read()\n"
    )
    host.check_output(
        "python3 -c %s %s %s", script, f"http://127.0.0.1:{port}/inject", json.dumps([message])
    )


def _sent(host) -> list[dict]:
    f = host.file(f"{FAKE_DIR}/sent.jsonl")
    if not f.exists:
        return []
    return [json.loads(line) for line in f.content_string.splitlines() if line.strip()]


@pytest.fixture(scope="module", autouse=True)
def whatsapp_enabled(test_vars) -> None:
    if not test_vars.get("nanobot_whatsapp_enabled"):
        pytest.skip("nanobot_whatsapp_enabled is not set in deploy/test/vars.yml")


@pytest.fixture(scope="module")
def bridge_pid(host) -> int:
    assert host.service(UNIT).is_enabled
    assert host.service(UNIT).is_running, host.run(f"systemctl status --no-pager {UNIT}").stdout
    pid = int(host.check_output(f"systemctl show -p MainPID --value {UNIT}"))
    assert pid > 0
    return pid


def test_bridge_runs_on_debians_node_as_the_service_user(host, bridge_pid):
    major = _debian_major(host)
    version = host.check_output("/usr/bin/node --version")
    print(f"\nDebian {major}: the bridge runs on Debian's nodejs {version}")
    assert version.startswith(f"v{NODE_MAJOR[major]}."), version
    assert host.package("nodejs").is_installed
    assert not host.package("npm").is_installed  # the controller builds node_modules
    proc = host.process.get(pid=bridge_pid)
    assert proc.user == "nanobot"
    assert proc.args.split()[:2] == ["/usr/bin/node", "/opt/nanobot/bridge/src/index.js"]
    assert host.check_output(f"systemctl show -p NRestarts --value {UNIT}") == "0"
    # Baileys loaded (index.js requires it first, the fake or not) and the server is up.
    log = _journal(host, UNIT)
    assert "BRIDGE_FAKE_WHATSAPP is set" in log, log  # the drop-in of this test is in force
    assert f"listening on ws://127.0.0.1:{BRIDGE_PORT} (token required)" in log, log
    assert "WhatsApp connected" in log, log
    # The installed tree is root's: the service can read it, not change it.
    assert host.file("/opt/nanobot/bridge/src/index.js").user == "root"
    assert host.run("runuser -u nanobot -- test -w /opt/nanobot/bridge/src/index.js").rc != 0
    auth = host.file("/var/lib/nanobot/.nanobot/whatsapp-auth")
    assert (auth.user, auth.mode) == ("nanobot", 0o700)


def test_the_token_comes_from_an_encrypted_credential(host, test_vars, bridge_pid):
    token = test_vars["nanobot_whatsapp_bridge_token"]
    stored = host.check_output("base64 -w0 /etc/nanobot/credentials/whatsapp-bridge-token")
    assert token not in host.check_output(
        "cat /etc/nanobot/credentials/whatsapp-bridge-token | tr -c '[:print:]' '.'"
    )
    assert stored, "the credential file is empty"
    dropin = host.file("/etc/systemd/system/nanobot-whatsapp-bridge.service.d/10-ansible.conf")
    assert (
        "LoadCredentialEncrypted=whatsapp-bridge-token:/etc/nanobot/credentials/"
        "whatsapp-bridge-token" in dropin.content_string
    )
    # Neither the bridge's command line nor its environment carries the token.
    assert token not in host.check_output(f"tr '\\0' ' ' </proc/{bridge_pid}/cmdline")
    assert token not in host.check_output(f"tr '\\0' '\\n' </proc/{bridge_pid}/environ")
    config = json.loads(host.file("/var/lib/nanobot/.nanobot/config.json").content_string)
    wa = config["channels"]["whatsapp"]
    assert wa["enabled"] is True and wa["manageBridge"] is False
    assert wa["bridgeUrl"] == f"ws://127.0.0.1:{BRIDGE_PORT}"
    assert wa["bridgeToken"] and token not in wa["bridgeToken"]  # a credential reference
    for unit in (UNIT, "nanobot.service"):
        assert token not in _journal(host, unit)


def test_the_gateway_is_authenticated_to_the_bridge(host):
    # The gateway can come up before the bridge listens: it reconnects with backoff.
    _wait(
        lambda: "connected to the WhatsApp bridge" in _journal(host, "nanobot.service"),
        60,
        "the gateway to connect to the bridge",
    )
    assert re.search(r"client \S+ authenticated as channel", _journal(host, UNIT))


def test_a_wrong_token_is_refused_and_logged(host):
    since = host.check_output("date '+%Y-%m-%d %H:%M:%S'")
    script = (
        "const WebSocket = require('/opt/nanobot/bridge/node_modules/ws');\n"
        "const ws = new WebSocket(process.argv[1]);\n"
        "const got = [];\n"
        "ws.on('open', () => ws.send(JSON.stringify({type: 'auth', token: 'x'.repeat(40)})));\n"
        "ws.on('message', (m) => got.push(String(m).slice(0, 60)));\n"
        "ws.on('close', (code) => { console.log(JSON.stringify({code, got})); process.exit(0); });\n"
        "setTimeout(() => { console.log('still open'); process.exit(1); }, 10000);\n"
    )
    out = host.check_output("node -e %s %s", script, f"ws://127.0.0.1:{BRIDGE_PORT}")
    result = json.loads(out)
    assert result["got"] == [], result  # nothing (no status, no QR) before authentication
    _wait(
        lambda: "authentication failed" in _journal(host, UNIT, since),
        10,
        "the bridge to log the refused client",
    )


def test_the_port_is_bound_to_loopback_only(host):
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in host.file(table).content_string.splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, port = local.rsplit(":", 1)
            if state == "0A" and int(port, 16) == BRIDGE_PORT:  # 0A: LISTEN
                listening.append(addr)
    assert listening == ["0100007F"], listening  # 127.0.0.1, no IPv6, no wildcard
    if host.exists("ss"):
        ss = host.check_output(f"ss -Hltn 'sport = :{BRIDGE_PORT}'")
        print(f"\nss -ltn: {ss}")
        assert [line.split()[3] for line in ss.splitlines()] == [f"127.0.0.1:{BRIDGE_PORT}"]
    # From the container's own non-loopback address (what another host would reach) the
    # connection is refused; on 127.0.0.1 it is accepted.
    script = (
        "import json, socket, sys\n"
        "port = int(sys.argv[1])\n"
        "probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "probe.connect(('10.0.2.2', 9)); addr = probe.getsockname()[0]\n"
        "def attempt(host):\n"
        "    try:\n"
        "        socket.create_connection((host, port), timeout=5).close(); return 'open'\n"
        "    except OSError as e:\n"
        "        return type(e).__name__\n"
        "print(json.dumps({'addr': addr, 'outside': attempt(addr), 'loopback': attempt('127.0.0.1')}))\n"
    )
    result = json.loads(host.check_output("python3 -c %s %s", script, str(BRIDGE_PORT)))
    print(f"\nconnect to {result['addr']}:{BRIDGE_PORT}: {result['outside']}")
    assert not result["addr"].startswith("127."), result
    assert result["outside"] == "ConnectionRefusedError", result
    assert result["loopback"] == "open", result


def test_a_message_end_to_end_and_a_stranger_denied(host, test_vars, scripted_model):
    allowed = _jid(test_vars["nanobot_whatsapp_allow_from"][0])
    stranger = "4470000123@s.whatsapp.net"
    marker = f"wa-{uuid.uuid4().hex[:8]}"
    since = host.check_output("date '+%Y-%m-%d %H:%M:%S'")
    _wait(
        lambda: "connected to the WhatsApp bridge" in _journal(host, "nanobot.service"),
        60,
        "the gateway to connect to the bridge",
    )
    before = len(_sent(host))
    _inject(host, stranger, f"exec: echo stranger-{marker}")
    _inject(host, allowed, f"exec: echo {marker}")

    def replied():
        return [m for m in _sent(host)[before:] if m["to"] == allowed and FINAL in m["text"]]

    reply = _wait(replied, 120, "the reply to the allowed number")
    print(f"\nWhatsApp reply to {allowed}: {reply[0]['text'][:120]!r}")
    assert marker in reply[0]["text"]
    assert [m for m in _sent(host)[before:] if m["to"] == stranger] == []
    log = _journal(host, "nanobot.service", since)
    assert "Access denied" in log and "4470000123" in log, log[-2000:]
    assert f"stranger-{marker}" not in json.dumps(_sent(host))


def test_exposure_score(host):
    major = _debian_major(host)
    out = host.check_output(f"systemd-analyze security --no-pager {UNIT}")
    score = float(re.search(rf"Overall exposure level for {re.escape(UNIT)}: ([\d.]+)", out)[1])
    print(f"\nsystemd-analyze security {UNIT} on Debian {major}: exposure {score}")
    assert score <= EXPOSURE_MAX[major]
