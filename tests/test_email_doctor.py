"""`nanobot doctor` and `nanobot status` on e-mail configs, run as the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LITERAL = "imap-literal-secret-0123456789"
ENV = {"IMAP_PW_FOR_TEST": "imap-env-secret-0123456789", "SMTP_PW_FOR_TEST": "smtp-env-secret-01"}

GOOD = {
    "enabled": True,
    "consentGranted": True,
    "imapHost": "imap.example.com",
    "imapUsername": "bot@example.com",
    "imapPassword": "${IMAP_PW_FOR_TEST}",
    "smtpHost": "smtp.example.com",
    "smtpUsername": "bot@example.com",
    "smtpPassword": "${SMTP_PW_FOR_TEST}",
    "fromAddress": "bot@example.com",
    "allowFrom": ["you@example.com"],
    "trustedAuthservIds": ["mx.example.com"],
}


def cli(tmp_path: Path, email: dict, *argv: str) -> subprocess.CompletedProcess:
    home = tmp_path / "home"
    home.mkdir(mode=0o700, exist_ok=True)
    config = home / "config.json"
    config.write_text(json.dumps({"channels": {"email": email}}))
    config.chmod(0o600)
    return subprocess.run(
        [sys.executable, "-m", "nanobot", *argv],
        cwd=ROOT,
        env={**os.environ, **ENV, "NANOBOT_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def email_checks(tmp_path: Path, email: dict) -> dict[str, dict]:
    proc = cli(tmp_path, email, "doctor", "--json")
    assert proc.returncode in (0, 1), proc.stderr
    for secret in (LITERAL, *ENV.values()):
        assert secret not in proc.stdout + proc.stderr
    checks = json.loads(proc.stdout)["checks"]
    return {c["id"]: c for c in checks if c["id"].startswith(("email_", "allow_from.email"))}


def test_a_sound_email_config_passes(tmp_path):
    found = email_checks(tmp_path, GOOD)
    assert {k: c["status"] for k, c in found.items()} == {
        "allow_from.email": "PASS",
        "email_consent": "PASS",
        "email_tls": "PASS",
        "email_sender_auth": "PASS",
        "email_password": "PASS",
    }
    assert "IMAPS; SMTP with STARTTLS" in found["email_tls"]["message"]
    assert "DKIM or SPF as judged by mx.example.com" in found["email_sender_auth"]["message"]


def test_every_weak_email_setting_is_named_with_its_fix(tmp_path):
    found = email_checks(
        tmp_path,
        {
            **GOOD,
            "consentGranted": False,
            "allowInsecure": True,
            "imapUseSsl": False,
            "smtpUseTls": False,
            "allowFrom": ["you@example.com", "example.com", "Bob <bob@example.com>"],
            "verifyDkim": False,
            "verifySpf": False,
            "imapPassword": LITERAL,
        },
    )
    status = {k: c["status"] for k, c in found.items()}
    assert status == {
        "allow_from.email": "PASS",
        "email_consent": "WARN",
        "email_tls": "WARN",
        "email_allow_entries": "WARN",
        "email_sender_auth": "WARN",
        "email_password": "WARN",
    }
    tls = found["email_tls"]["message"]
    assert "IMAP falls back to plain text" in tls and "SMTP sends the password" in tls
    assert "allowInsecure to false" in found["email_tls"]["fix"]
    assert "'example.com', 'Bob <bob@example.com>'" in found["email_allow_entries"]["message"]
    assert "you@example.com" not in found["email_allow_entries"]["message"]
    assert "anyone who writes a From address" in found["email_sender_auth"]["message"]
    assert "trustedAuthservIds" in found["email_sender_auth"]["fix"]
    assert "channels.email.imapPassword" in found["email_password"]["message"]
    assert "smtpPassword" not in found["email_password"]["message"]  # that one is a reference
    assert "consentGranted to true" in found["email_consent"]["fix"]


@pytest.mark.parametrize(
    "change,check,words",
    [
        ({"trustedAuthservIds": []}, "email_sender_auth", "refuses to start"),
        ({"smtpUseTls": False}, "email_tls", "refuses to start"),
        ({"allowFrom": []}, "allow_from.email", "anyone can talk"),
    ],
)
def test_configs_that_cannot_work_or_are_open_fail(tmp_path, change, check, words):
    found = email_checks(tmp_path, {**GOOD, **change})
    assert found[check]["status"] == "FAIL" and words in found[check]["message"]


def test_allow_insecure_with_tls_on_both_legs_still_warns(tmp_path):
    found = email_checks(tmp_path, {**GOOD, "allowInsecure": True})
    assert found["email_tls"]["status"] == "WARN"
    assert "unused now" in found["email_tls"]["message"]


def test_no_email_checks_while_the_channel_is_off(tmp_path):
    assert email_checks(tmp_path, {**GOOD, "enabled": False, "verifySpf": False}) == {}


def test_status_summarises_the_email_channel_without_secrets(tmp_path):
    proc = cli(tmp_path, {**GOOD, "imapPassword": LITERAL}, "status")
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if "e-mail" in line or "email" in line]
    text = "\n".join(lines)
    assert "email enabled, 1 allowed senders" in text
    assert "IMAP imap.example.com:993 (IMAPS), mailbox INBOX" in text
    assert "SMTP smtp.example.com:587 (STARTTLS)" in text
    assert "consent granted" in text and "IDLE where offered, else polling every 30 s" in text
    assert LITERAL not in proc.stdout and "env-secret" not in proc.stdout
    off = cli(tmp_path, {**GOOD, "consentGranted": False, "autoReplyEnabled": False}, "status")
    assert "consent NOT granted (mailbox untouched)" in off.stdout
    assert "SMTP off (autoReplyEnabled false: replies are recorded" in off.stdout
