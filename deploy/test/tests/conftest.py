"""testinfra wiring for the deployment test: every command runs inside the booted container.

deploy/test/run.sh sets NANOBOT_DEPLOY_PID (the container's PID 1 seen from the host),
NANOBOT_DEPLOY_ROOT (its root folder) and NANOBOT_DEPLOY_VARS (the test variables file).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path

import pytest
import yaml
from testinfra.backend import base
from testinfra.host import Host

CLEAN_ENV = "env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8"
LLM_UNIT = "nanobot-test-llm"
LLM_PORT = 18799
HERE = Path(__file__).resolve().parent


def _need(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.exit(f"{name} is not set: run these tests through deploy/test/run.sh", returncode=2)
    return value


class NsenterBackend(base.BaseBackend):
    """Runs commands in all namespaces of the container, with a clean environment."""

    NAME = "nsenter"

    def __init__(self, pid: str, *args, **kwargs) -> None:
        self.pid = pid
        super().__init__(f"container-{pid}", *args, **kwargs)

    def run(self, command: str, *args: str, **kwargs) -> base.CommandResult:
        cmd = self.get_command(command, *args)
        out = self.run_local(
            f"nsenter -t %s -m -u -i -n -p -C -- {CLEAN_ENV} /bin/sh -c %s", self.pid, cmd
        )
        out.command = self.encode(cmd)
        return out


@pytest.fixture(scope="session")
def host() -> Host:
    return Host(NsenterBackend(_need("NANOBOT_DEPLOY_PID")))


@pytest.fixture(scope="session")
def test_vars() -> dict:
    with open(_need("NANOBOT_DEPLOY_VARS"), encoding="utf-8") as f:
        return yaml.safe_load(f)


def secrets_by_credential(test_vars: dict) -> dict[str, str]:
    """Credential name -> the test secret vars.yml gives the role for it (enabled channels'
    secrets included)."""
    out = {"gateway-token": test_vars["nanobot_gateway_token"]}
    channel_secrets = {
        "telegram-token": ("nanobot_telegram_enabled", "nanobot_telegram_token"),
        "email-imap-password": ("nanobot_email_enabled", "nanobot_email_imap_password"),
        "email-smtp-password": ("nanobot_email_enabled", "nanobot_email_smtp_password"),
        "whatsapp-bridge-token": ("nanobot_whatsapp_enabled", "nanobot_whatsapp_bridge_token"),
    }
    for name, (enabled, var) in channel_secrets.items():
        if test_vars.get(enabled) and test_vars.get(var):
            out[name] = test_vars[var]
    for name, p in test_vars["nanobot_providers"].items():
        if p.get("api_key"):
            out[f"provider-{name}"] = p["api_key"]
    return out


@pytest.fixture(scope="session")
def main_pid(host: Host) -> int:
    pid = int(host.check_output("systemctl show -p MainPID --value nanobot.service"))
    assert pid > 0, "nanobot.service has no main process"
    return pid


def _http_json(host: Host, method: str, url: str, body=None, token: str | None = None) -> tuple:
    script = (
        "import json, sys, urllib.request, urllib.error\n"
        "req = urllib.request.Request(sys.argv[1], method=sys.argv[2], "
        "data=sys.argv[3].encode() or None, headers={'Content-Type': 'application/json'})\n"
        "tok = sys.argv[4]\n"
        "if tok: req.add_header('Authorization', 'Bearer ' + tok)\n"
        "try:\n"
        "    r = urllib.request.urlopen(req, timeout=60); s, b = r.status, r.read()\n"
        "except urllib.error.HTTPError as e:\n"
        "    s, b = e.code, e.read()\n"
        "print(json.dumps({'status': s, 'body': b.decode('utf-8', 'replace')}))\n"
    )
    data = json.dumps(body) if body is not None else ""
    out = host.check_output("python3 -c %s %s %s %s %s", script, url, method, data, token or "")
    result = json.loads(out)
    try:
        parsed = json.loads(result["body"])
    except json.JSONDecodeError:
        parsed = result["body"]
    return result["status"], parsed


@pytest.fixture(scope="session")
def http(host: Host):
    """http(method, url, body=None, token=None) -> (status, JSON body), sent inside the container."""
    return lambda *args, **kwargs: _http_json(host, *args, **kwargs)


@pytest.fixture(scope="session")
def turn(http, test_vars, scripted_model):
    """turn(text) -> the reply text of one agent turn in a fresh session (status 200 asserted)."""

    def run(text: str) -> str:
        body = {
            "model": "scripted",
            "messages": [{"role": "user", "content": text}],
            "user": f"deploy-test-{uuid.uuid4().hex[:8]}",  # a fresh session: no history
        }
        status, reply = http(
            "POST",
            "http://127.0.0.1:18790/v1/chat/completions",
            body,
            token=test_vars["nanobot_gateway_token"],
        )
        assert status == 200, reply
        return reply["choices"][0]["message"]["content"]

    return run


@pytest.fixture(scope="session")
def scripted_model(host: Host) -> str:
    """Start deploy/test/fake_llm.py in the container as a transient unit; its base URL."""
    root = Path(_need("NANOBOT_DEPLOY_ROOT"))
    dest = root / "usr/local/lib/nanobot-test/fake_llm.py"
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(HERE.parent / "fake_llm.py", dest)
    host.run(f"systemctl stop {LLM_UNIT}.service")
    host.check_output(
        f"systemd-run --unit={LLM_UNIT} --property=DynamicUser=yes --collect "
        f"/usr/bin/python3 /usr/local/lib/nanobot-test/fake_llm.py --port {LLM_PORT}"
    )
    base_url = f"http://127.0.0.1:{LLM_PORT}/v1"
    probe = f"import urllib.request as u; u.urlopen('{base_url}/models')"
    for _ in range(50):
        if host.run("python3 -c %s", probe).rc == 0:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"scripted model did not start: {host.run('journalctl -u ' + LLM_UNIT).stdout}")
    yield base_url
    host.run(f"systemctl stop {LLM_UNIT}.service")


# The far side of the channels, started by deploy/test/fakes.sh before the first converge.
TELEGRAM_CONTROL = "http://127.0.0.1:18797"
MAIL_CONTROL = "http://127.0.0.1:18796"


def wait_until(probe, timeout: float, what: str, interval: float = 0.5):
    """probe() until it returns something truthy (returned), or fail naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


@pytest.fixture(scope="session")
def telegram(http):
    """Control of the fake Bot API: .push(user_id, text, username=None), .state()."""

    class Telegram:
        def push(self, user_id: int, text: str, username: str | None = None) -> int:
            body = {"user_id": user_id, "text": text, "username": username}
            status, got = http("POST", f"{TELEGRAM_CONTROL}/push", body)
            assert status == 200, got
            return got["update_id"]

        def state(self) -> dict:
            status, got = http("GET", f"{TELEGRAM_CONTROL}/state")
            assert status == 200, got
            return got

    return Telegram()


@pytest.fixture(scope="session")
def mailhost(http):
    """Control of the mail host: .deliver(subject, sender, ...), .sent(), .flags()."""

    class MailHost:
        def deliver(self, subject: str, sender: str, body: str = "hello bot", authenticated=True):
            req = {
                "subject": subject,
                "sender": sender,
                "body": body,
                "authenticated": authenticated,
            }
            status, got = http("POST", f"{MAIL_CONTROL}/deliver", req)
            assert status == 200, got
            return got["message_id"]

        def sent(self) -> list[dict]:
            status, got = http("GET", f"{MAIL_CONTROL}/sent")
            assert status == 200, got
            return got

        def flags(self) -> dict:
            status, got = http("GET", f"{MAIL_CONTROL}/flags")
            assert status == 200, got
            return got

    return MailHost()
