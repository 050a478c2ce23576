"""`nanobot doctor` on purpose-made good and bad NANOBOT_HOMEs, run as the real CLI."""

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from nanobot.commands import doctor
from nanobot.config.schema import Config
from nanobot.security.audit import AuditLog
from nanobot.security.sandbox import bwrap_status

ROOT = Path(__file__).resolve().parents[1]
LITERAL_KEY = "sk-literal-abcdefghijklmnopqrstuvwxyz"
NOBODY = 65534

GOOD = {
    "channels": {"telegram": {"enabled": True, "token": "${TG_TOKEN}", "allowFrom": ["123456789"]}},
    "providers": {"openai": {"apiKey": "${OPENAI_KEY_FOR_TEST}"}},
}
BAD = {
    "channels": {"telegram": {"enabled": True, "token": "${TG_TOKEN}", "allowFrom": []}},
    "agents": {"defaults": {"restrictToWorkspace": False, "execConfig": {"timeout": 1200}}},
    "gateway": {"host": "0.0.0.0"},
    "providers": {"openai": {"apiKey": LITERAL_KEY}},
}
ENV = {"TG_TOKEN": "123456:" + "t" * 35, "OPENAI_KEY_FOR_TEST": "sk-from-env-" + "k" * 30}


def make_home(base: Path, config: dict | None, home_mode=0o700, config_mode=0o600) -> Path:
    home = base / "home"
    home.mkdir(mode=0o700)
    if config is not None:
        (home / "config.json").write_text(json.dumps(config))
        os.chmod(home / "config.json", config_mode)
    os.chmod(home, home_mode)
    return home


def doctor_cli(
    home: Path, *argv: str, user: int | None = None, python: str = sys.executable
) -> subprocess.CompletedProcess:
    env = {**os.environ, **ENV, "NANOBOT_HOME": str(home)}
    return subprocess.run(
        [python, "-m", "nanobot", "doctor", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        user=user,
    )


def by_id(result: subprocess.CompletedProcess) -> dict:
    data = json.loads(result.stdout)
    return {c["id"]: c for c in data["checks"]}


def tamper_audit(home: Path) -> Path:
    path = home / "logs" / "audit.jsonl"
    log = AuditLog(path)
    for i in range(4):
        log.record("access", channel="telegram", sender=str(i), decision="allowed")
    log.close()
    lines = path.read_bytes().splitlines()
    lines[1] = lines[1].replace(b'"sender": "1"', b'"sender": "7"')
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_bad_configuration_fails_every_check_it_should(tmp_path):
    home = make_home(tmp_path, BAD, home_mode=0o755, config_mode=0o644)
    audit = tamper_audit(home)
    r = doctor_cli(home, "--json")
    assert r.returncode == 1, r.stderr
    data = json.loads(r.stdout)
    assert data["ok"] is False
    checks = by_id(r)
    expected = {
        "config_mode": "FAIL",
        "home_mode": "FAIL",
        "non_root": "FAIL" if os.geteuid() == 0 else "PASS",
        "allow_from.telegram": "FAIL",
        "restrict_to_workspace": "FAIL",
        "exec_timeout": "WARN",
        "literal_secrets": "WARN",
        "gateway_bind": "FAIL",
        "audit_chain": "FAIL",
        "logs_dir_mode": "PASS",
        "log_file_modes": "PASS",
        "rate_limit": "PASS",
    }
    assert {k: checks[k]["status"] for k in expected} == expected
    assert "0644" in checks["config_mode"]["message"]
    assert checks["config_mode"]["fix"].startswith(f"chmod 600 {home / 'config.json'}")
    assert "providers.openai.apiKey" in checks["literal_secrets"]["message"]
    assert "${" in checks["literal_secrets"]["fix"] and "file:" in checks["literal_secrets"]["fix"]
    assert checks["audit_chain"]["message"].startswith(f"audit chain BROKEN at {audit}:3")
    assert "1200" in checks["exec_timeout"]["message"]
    assert all(c["fix"] for c in data["checks"] if c["status"] != "PASS")
    assert LITERAL_KEY not in r.stdout + r.stderr


def test_human_output(tmp_path):
    home = make_home(tmp_path, BAD, config_mode=0o644)
    r = doctor_cli(home)
    assert r.returncode == 1
    lines = r.stdout.splitlines()
    assert (
        "FAIL  channels.telegram.allowFrom is empty: anyone can talk to the bot — fix: add your "
        "Telegram user id"
    ) in r.stdout
    assert any(x.startswith("FAIL  config.json mode 0644") for x in lines)
    assert "PASS  NANOBOT_HOME mode 0700" in lines
    assert all(x[:6] in ("PASS  ", "WARN  ", "FAIL  ") for x in lines[:-1])
    assert lines[-1].startswith("nanobot doctor: ") and "failing" in lines[-1]
    assert LITERAL_KEY not in r.stdout + r.stderr


def test_fix_repairs_modes_and_nothing_else(tmp_path):
    home = make_home(tmp_path, BAD, home_mode=0o755, config_mode=0o644)
    logs = home / "logs"
    logs.mkdir(mode=0o755)
    os.chmod(logs, 0o755)
    (logs / "nanobot.log").write_text("x")
    os.chmod(logs / "nanobot.log", 0o644)
    (logs / "nanobot.log.1").write_text("x")
    os.chmod(logs / "nanobot.log.1", 0o640)
    outside = tmp_path / "outside.txt"
    outside.write_text("not ours")
    os.chmod(outside, 0o644)
    (logs / "audit.jsonl.1").symlink_to(outside)

    r = doctor_cli(home, "--fix")
    fixed = [x for x in r.stdout.splitlines() if x.startswith("fixed: ")]
    assert f"fixed: chmod 600 {home / 'config.json'} (was 0644)" in fixed
    assert f"fixed: chmod 700 {home} (was 0755)" in fixed
    assert f"fixed: chmod 700 {logs} (was 0755)" in fixed
    assert f"fixed: chmod 600 {logs / 'nanobot.log'} (was 0644)" in fixed
    assert any("skipped" in x and "audit.jsonl.1" in x for x in fixed)
    mode = lambda p: stat.S_IMODE(p.lstat().st_mode)  # noqa: E731
    assert mode(home / "config.json") == 0o600 and mode(home) == 0o700 and mode(logs) == 0o700
    assert mode(logs / "nanobot.log") == 0o600 and mode(logs / "nanobot.log.1") == 0o600
    assert mode(outside) == 0o644  # a symlink is never followed
    # The checks ran after the repair; what --fix cannot repair still fails.
    assert "PASS  config.json mode 0600" in r.stdout
    assert "WARN  symlinks among the log files: audit.jsonl.1" in r.stdout
    assert "FAIL  restrictToWorkspace is off" in r.stdout
    assert r.returncode == 1
    again = doctor_cli(home, "--fix", "--json")
    assert json.loads(again.stdout)["fixed"] == [
        f"skipped {logs / 'audit.jsonl.1'}: a symlink (fix its target by hand)"
    ]


def test_loose_log_files_are_reported(tmp_path):
    home = make_home(tmp_path, GOOD)
    logs = home / "logs"
    logs.mkdir(mode=0o700)
    (logs / "nanobot.log").write_text("x")
    os.chmod(logs / "nanobot.log", 0o640)
    checks = by_id(doctor_cli(home, "--json"))
    assert checks["log_file_modes"]["status"] == "WARN"
    assert "nanobot.log 0640" in checks["log_file_modes"]["message"]
    os.chmod(logs / "nanobot.log", 0o644)
    os.chmod(logs, 0o755)
    checks = by_id(doctor_cli(home, "--json"))
    assert checks["log_file_modes"]["status"] == "FAIL"
    assert checks["logs_dir_mode"]["status"] == "FAIL"


def test_invalid_config_exits_2(tmp_path):
    home = make_home(tmp_path, None)
    (home / "config.json").write_text('{"tools": {"exec": {"timeout": "soon"}}}')
    os.chmod(home / "config.json", 0o600)
    r = doctor_cli(home)
    assert r.returncode == 2
    assert "tools.exec.timeout" in r.stderr and "fix:" in r.stderr
    assert r.stdout == ""
    r = doctor_cli(home, "--json")
    assert r.returncode == 2 and json.loads(r.stdout)["ok"] is False


def test_more_channel_and_gateway_rules(tmp_path):
    config = {
        "channels": {
            "telegram": {"enabled": True, "token": "${TG_TOKEN}", "allowFrom": ["*"]},
            "whatsapp": {"enabled": True, "allowFrom": ["+1234567890"]},
            "email": {"enabled": False, "allowFrom": []},
        },
        "gateway": {"host": "0.0.0.0", "token": "${TG_TOKEN}"},
        "tools": {"exec": {"sandbox": "none"}},
        "security": {"audit": {"enabled": False}, "rateLimit": {"messagesPerMinute": 0}},
    }
    checks = by_id(doctor_cli(make_home(tmp_path, config), "--json"))
    assert checks["allow_from.telegram"]["status"] == "WARN"
    assert checks["allow_from.whatsapp"]["status"] == "PASS"
    assert "allow_from.email" not in checks  # disabled channels are not judged
    assert checks["whatsapp_bridge_token"]["status"] == "FAIL"
    assert checks["gateway_bind"]["status"] == "PASS"
    assert checks["sandbox"]["status"] == "WARN"
    assert checks["audit_chain"]["status"] == "WARN"
    assert checks["rate_limit"]["status"] == "WARN"


def python_for(user: int | None) -> str | None:
    """An interpreter (3.11+) that user can run: ours may live in root's private home."""
    for exe in (sys.executable, "/usr/bin/python3"):
        probe = [exe, "-c", "import sys; assert sys.version_info >= (3, 11)"]
        try:
            if subprocess.run(probe, user=user, capture_output=True, timeout=30).returncode == 0:
                return exe
        except OSError:
            continue
    return None


def test_clean_setup_passes_with_exit_0():
    # Run as an unprivileged user: the suite runs as root here, which doctor rightly fails.
    user = NOBODY if os.geteuid() == 0 else None
    python = python_for(user)
    if python is None:
        pytest.skip("no Python 3.11+ interpreter that the unprivileged user 'nobody' can run")
    base = Path(tempfile.mkdtemp(prefix="nanobot-doctor-"))
    try:
        os.chmod(base, 0o755)
        home = make_home(base, GOOD)
        anchor = home / "state" / "audit-anchor.json"  # where the gateway keeps it
        AuditLog(home / "logs" / "audit.jsonl", anchor=anchor).record("gateway_start")
        if user is not None:
            for p in [home, *home.rglob("*")]:
                os.chown(p, user, user)
        r = doctor_cli(home, user=user, python=python)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "FAIL" not in r.stdout
        assert "PASS  audit chain intact (1 lines in 1 files)" in r.stdout
        assert "PASS  channels.telegram.allowFrom lists 1 sender(s)" in r.stdout
        assert "PASS  running as non-root user" in r.stdout
    finally:
        shutil.rmtree(base)


def test_missing_home_and_config_are_warnings(tmp_path):
    checks = by_id(doctor_cli(tmp_path / "nowhere", "--json"))
    assert checks["config_mode"]["status"] == "WARN"
    assert checks["home_mode"]["status"] == "WARN"
    assert not (tmp_path / "nowhere").exists()  # doctor only looks


def test_root_check_takes_the_uid():
    assert doctor.check_user(0).status == "FAIL"
    assert "useradd" in doctor.check_user(0).fix
    assert doctor.check_user(1000).status == "PASS"


def test_sandbox_check_uses_real_bwrap_status(tmp_path):
    missing = bwrap_status(search_path=str(tmp_path))  # an empty folder: no bwrap on it
    assert missing[0] is False
    assert doctor.check_sandbox("bwrap", missing).status == "FAIL"
    assert doctor.check_sandbox("auto", missing).status == "WARN"
    assert "apt-get install bubblewrap" in doctor.check_sandbox("auto", missing).fix
    assert doctor.check_sandbox("none", missing).status == "WARN"
    here = bwrap_status()
    assert doctor.check_sandbox("auto", here).status == ("PASS" if here[0] else "WARN")


def test_gateway_loopback_forms():
    cfg = Config()
    for host, status in [
        ("127.0.0.1", "PASS"),
        ("127.0.0.2", "PASS"),
        ("::1", "PASS"),
        ("localhost", "PASS"),
        ("0.0.0.0", "FAIL"),
        ("", "FAIL"),
        ("::", "FAIL"),
        ("192.168.1.5", "FAIL"),
        ("myhost.example", "FAIL"),
    ]:
        cfg.gateway.host = host
        assert doctor.check_gateway(cfg).status == status, host
