"""Live state of a host converged by deploy/ansible/site.yml (run by deploy/test/run.sh)."""

from __future__ import annotations

import re
import time
import uuid

import pytest
from conftest import secrets_by_credential

pytestmark = pytest.mark.deploy

STATE = "/var/lib/nanobot/.nanobot"
CREDS = "/etc/nanobot/credentials"
AS_NANOBOT = "setpriv --reuid=nanobot --regid=nanobot --clear-groups --"


def _secret_values(test_vars: dict) -> list[str]:
    return list(secrets_by_credential(test_vars).values())


def _credential_names(test_vars: dict) -> list[str]:
    return sorted(secrets_by_credential(test_vars))


def _unit_props(host, *names: str) -> dict[str, str]:
    out = host.check_output("systemctl show nanobot.service " + " ".join(f"-p {n}" for n in names))
    return dict(line.split("=", 1) for line in out.splitlines())


def test_service_account(host):
    user = host.user("nanobot")
    assert user.exists
    assert user.group == "nanobot"
    assert user.groups == ["nanobot"], "no supplementary groups (no sudo, adm, ...)"
    assert user.home == "/var/lib/nanobot"
    assert user.shell == "/usr/sbin/nologin"
    assert user.uid < 1000, "a system account"
    assert user.password in ("!", "!*", "*"), "no usable password"
    assert host.run("sudo -n -l -U nanobot").stdout.count("not allowed") == 1


@pytest.mark.parametrize(
    ("path", "kind", "owner", "mode"),
    [
        ("/var/lib/nanobot", "directory", "nanobot", 0o700),
        (STATE, "directory", "nanobot", 0o700),
        (f"{STATE}/config.json", "file", "nanobot", 0o600),
        (f"{STATE}/workspace", "directory", "nanobot", 0o700),
        (f"{STATE}/logs", "directory", "nanobot", 0o700),
        ("/etc/nanobot", "directory", "root", 0o755),
        (CREDS, "directory", "root", 0o700),
        ("/opt/nanobot", "directory", "root", 0o755),
        ("/opt/nanobot/releases", "directory", "root", 0o755),
        ("/etc/systemd/system/nanobot.service", "file", "root", 0o644),
        ("/etc/systemd/system/nanobot.service.d/10-ansible.conf", "file", "root", 0o644),
        ("/usr/local/sbin/nanobotctl", "file", "root", 0o755),
        ("/usr/local/lib/nanobot/verify-unit", "file", "root", 0o755),
        ("/etc/logrotate.d/nanobot", "file", "root", 0o644),
    ],
)
def test_modes(host, path, kind, owner, mode):
    f = host.file(path)
    assert f.exists, path
    assert f.is_directory if kind == "directory" else f.is_file
    assert (f.user, f.group) == (owner, owner)
    assert f.mode == mode, f"{path}: {oct(f.mode)} != {oct(mode)}"


def test_credential_files_root_only(host, test_vars):
    names = host.check_output(f"ls -1A {CREDS}").split()
    assert sorted(names) == _credential_names(test_vars)
    for name in names:
        f = host.file(f"{CREDS}/{name}")
        assert (f.user, f.group, f.mode) == ("root", "root", 0o600), name


def test_service_user_cannot_read_credentials_directly(host):
    denied = host.run(f"{AS_NANOBOT} cat {CREDS}/gateway-token")
    assert denied.rc != 0 and "Permission denied" in denied.stderr
    assert host.run(f"{AS_NANOBOT} ls {CREDS}").rc != 0


def test_config_holds_references_not_secrets(host, test_vars):
    text = host.file(f"{STATE}/config.json").content_string
    for secret in _secret_values(test_vars):
        assert secret not in text
    for name in _credential_names(test_vars):
        assert f'"file:${{CREDENTIALS_DIRECTORY}}/{name}"' in text


def test_venv_is_root_owned_and_read_only(host):
    link = host.file("/opt/nanobot/venv")
    assert link.is_symlink
    assert re.fullmatch(r"/opt/nanobot/releases/[0-9][^/]*-[0-9a-f]{12}/venv", link.linked_to)
    not_root = host.check_output("find /opt/nanobot ! -user root -printf '%p\\n' | head")
    assert not_root == ""
    writable = host.check_output("find /opt/nanobot ! -type l -perm /022 -printf '%p\\n' | head")
    assert writable == "", "group/other-writable files under /opt/nanobot"
    attempt = host.run(f"{AS_NANOBOT} touch /opt/nanobot/venv/bin/probe")
    assert attempt.rc != 0


def test_requests_comes_from_debian(host):
    where = host.check_output(
        "/opt/nanobot/venv/bin/python -c 'import requests, nanobot; print(requests.__file__)'"
    )
    assert where.startswith("/usr/lib/python3/dist-packages/")
    assert host.check_output("/opt/nanobot/venv/bin/nanobot --version").startswith("nanobot ")


def test_packages(host):
    for name in ("bubblewrap", "ufw", "python3-requests", "logrotate"):
        assert host.package(name).is_installed, name


def test_security_updates_are_automatic(host):
    assert host.package("unattended-upgrades").is_installed
    conf = host.file("/etc/apt/apt.conf.d/52nanobot-unattended-upgrades").content_string
    assert 'APT::Periodic::Unattended-Upgrade "1";' in conf
    assert "label=Debian-Security" in conf
    assert 'Automatic-Reboot "false"' in conf


def test_apt_sources_use_https(host):
    sources = host.check_output(
        "cat /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null || true"
    )
    assert "https://" in sources
    assert not re.search(r"^\s*(deb|URIs:).*http://", sources, re.M)


def test_unit_enabled_active_and_clean(host):
    svc = host.service("nanobot")
    assert svc.is_enabled
    assert svc.is_running
    props = _unit_props(host, "Type", "NRestarts", "WatchdogUSec", "User")
    assert props["Type"] == "notify"
    assert props["User"] == "nanobot"
    assert props["WatchdogUSec"] == "4s", "the test sets WatchdogSec=4 via nanobot_service_extra"
    assert props["NRestarts"] == "0", "the gateway restarted (crash or missed watchdog)"
    assert host.run("systemd-analyze verify nanobot.service 2>&1").stdout == ""


def test_watchdog_is_fed(host):
    """After READY=1 the gateway keeps sending WATCHDOG=1 (systemd stamps every ping)."""
    start = int(_unit_props(host, "ActiveEnterTimestampMonotonic")["ActiveEnterTimestampMonotonic"])
    for _ in range(100):
        props = _unit_props(host, "WatchdogTimestampMonotonic", "NRestarts")
        if int(props["WatchdogTimestampMonotonic"]) > start:
            break
        time.sleep(0.1)
    assert int(props["WatchdogTimestampMonotonic"]) > start, "no WATCHDOG=1 after READY=1"
    assert props["NRestarts"] == "0"


def test_process_runs_as_nanobot_with_credentials(host, main_pid):
    uid = host.user("nanobot").uid
    status = host.file(f"/proc/{main_pid}/status").content_string
    uids = re.search(r"^Uid:\s+(.*)$", status, re.M).group(1).split()
    assert uids == [str(uid)] * 4
    assert re.search(r"^CapEff:\s+0+$", status, re.M)
    environ = host.file(f"/proc/{main_pid}/environ").content_string.split("\0")
    assert "NANOBOT_HOME=/var/lib/nanobot/.nanobot" in environ
    assert any(e.startswith("CREDENTIALS_DIRECTORY=") for e in environ)


# Measured: Debian 12 (systemd 252) 2.1; Debian 13 (systemd 257) 2.3, because bubblewrap 0.12
# needs RestrictSUIDSGID=no there (see the role's drop-in template).
EXPOSURE_MAX = {"12": 2.1, "13": 2.3}


def test_exposure_score(host):
    major = host.file("/etc/debian_version").content_string.split(".")[0].strip()
    out = host.check_output("systemd-analyze security --no-pager nanobot.service")
    score = float(re.search(r"Overall exposure level for nanobot\.service: ([\d.]+)", out).group(1))
    print(f"\nsystemd-analyze security nanobot.service on Debian {major}: exposure {score}")
    assert score <= EXPOSURE_MAX[major]


def test_healthz(http, test_vars):
    status, body = http("GET", "http://127.0.0.1:18790/healthz")
    assert status == 200
    enabled = {
        c for c in ("telegram", "whatsapp", "email") if test_vars.get(f"nanobot_{c}_enabled")
    }
    assert set(body["channels"]) == enabled  # their state: tests/test_channels.py


def test_chat_api_requires_the_token(http):
    body = {"model": "scripted", "messages": [{"role": "user", "content": "hi"}]}
    status, _ = http("POST", "http://127.0.0.1:18790/v1/chat/completions", body)
    assert status == 401
    status, _ = http("POST", "http://127.0.0.1:18790/v1/chat/completions", body, token="wrong")
    assert status in (401, 403)


def test_turn_runs_exec_in_the_sandbox(host, http, test_vars, scripted_model):
    body = {
        "model": "scripted",
        "messages": [{"role": "user", "content": "run the probe"}],
        "user": f"deploy-test-{uuid.uuid4().hex[:8]}",  # a fresh session: no history
    }
    host.check_output(f"rm -f {STATE}/workspace/probe.txt")
    status, reply = http(
        "POST",
        "http://127.0.0.1:18790/v1/chat/completions",
        body,
        token=test_vars["nanobot_gateway_token"],
    )
    assert status == 200, reply
    content = reply["choices"][0]["message"]["content"]
    assert content.startswith("probe finished: "), content
    assert "sandboxed" in content
    pid1 = re.search(r"pid1=(\S*)", content)
    assert pid1 and pid1.group(1) not in ("", "systemd"), f"no pid namespace: {content}"
    probe = host.file(f"{STATE}/workspace/probe.txt")
    assert probe.content_string == "sandboxed\n"
    assert probe.user == "nanobot"
    for secret in _secret_values(test_vars):
        assert secret not in content


def test_doctor_passes_in_the_service_environment(host):
    out = host.run("nanobotctl doctor")
    print(f"\n{out.stdout}")
    assert out.rc == 0, out.stdout + out.stderr
    assert "FAIL" not in out.stdout


def test_journal_has_the_gateway_log(host):
    log = host.check_output("journalctl -u nanobot.service --no-pager -o cat")
    assert "gateway ready" in log


def test_logrotate_rule_is_valid(host):
    assert host.run("logrotate --debug /etc/logrotate.d/nanobot").rc == 0


def test_firewall_rules(host):
    status = host.check_output("ufw status verbose")
    assert "Status: active" in status
    assert "deny (incoming), deny (outgoing)" in status
    for v6 in ("", r" \(v6\)"):  # every rule for IPv4 and for IPv6
        assert re.search(rf"^22/tcp{v6}\s+LIMIT IN\s+Anywhere{v6}", status, re.M), status
        assert re.search(rf"^53/udp{v6}\s+ALLOW OUT\s+Anywhere{v6}", status, re.M)
        assert re.search(rf"^53/tcp{v6}\s+ALLOW OUT\s+Anywhere{v6}", status, re.M)
        assert re.search(rf"^443/tcp{v6}\s+ALLOW OUT\s+Anywhere{v6}", status, re.M)
    assert re.search(r"^169\.254\.169\.254 80/tcp\s+ALLOW OUT\s+Anywhere", status, re.M), status
    assert not re.search(r"^80/tcp", status, re.M), "no host-wide rule for port 80 any more"
    assert "# nanobot: ssh" in status, "the role's rules carry a nanobot: comment"
    assert "IPV6=yes" in host.file("/etc/default/ufw").content_string
    assert "ufw6-user-output" in host.check_output("ip6tables -S")


def test_service_cannot_reach_link_local_or_multicast(host):
    out = host.check_output(
        "systemctl show nanobot.service -p IPAddressDeny -p SocketBindAllow -p SocketBindDeny"
    )
    assert "169.254.0.0/16" in out and "fe80::/64" in out, out
    assert "224.0.0.0/4" in out and "ff00::/8" in out, out
    assert re.search(r"^SocketBindAllow=tcp:?18790$", out, re.M), out  # 252 prints "tcp18790"
    assert re.search(r"^SocketBindDeny=any$", out, re.M), out


def _connect(host, port: int, timeout: float):
    return host.run(
        "python3 -c %s",
        "import socket; socket.create_connection"
        f"(('deb.debian.org', {port}), timeout={timeout}).close()",
    )


def test_egress_443_allowed_80_denied(host):
    assert _connect(host, 443, 15).rc == 0, "HTTPS out must work (DNS + 443)"
    blocked = _connect(host, 80, 3)
    assert blocked.rc != 0, "plain HTTP out must be denied (by the default outgoing policy)"
