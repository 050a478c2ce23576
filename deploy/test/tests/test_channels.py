"""The channels of a converged host, end to end: Telegram through the project's fake Bot API and
e-mail through a real Dovecot and SMTP server, both inside the container (deploy/test/fakes.sh),
with the secrets the role encrypted (the Telegram token, the IMAP and SMTP passwords).

A stranger's message is always sent before an allowed one: channels handle messages in
order, so once the allowed sender has the reply, the stranger's message was decided too."""

from __future__ import annotations

import re
import uuid

import pytest
from conftest import wait_until

pytestmark = pytest.mark.deploy

ALLOWED_TG, STRANGER_TG = 4242, 777001
ALICE, MALLORY = "alice@example.com", "mallory@example.org"
FINAL = "probe finished: "  # deploy/test/fake_llm.py's final answer


def _texts_to(state: dict, chat_id: int) -> list[str]:
    """Everything the bot showed in a chat: messages sent and their edits (live progress)."""
    chat = str(chat_id)
    sent = [m["visible"] for m in state["sent"] if m["chat_id"] == chat]
    edits = [m["visible"] for m in state["edits"] if m["chat_id"] == chat]
    return sent + edits


def _journal(host, since: str) -> str:
    return host.check_output(f"journalctl -u nanobot.service --no-pager -o cat --since '{since}'")


def _now(host) -> str:
    return host.check_output("date '+%Y-%m-%d %H:%M:%S'")


def test_healthz_shows_both_channels_connected(http):
    def connected():
        _, body = http("GET", "http://127.0.0.1:18790/healthz")
        chans = body.get("channels", {})
        good = chans.get("telegram") == "running" and re.match(
            r"running: (IDLE|polling)", chans.get("email", "")
        )
        return body if good else None

    body = wait_until(connected, 60, "telegram and email to be running in /healthz")
    print(f"\n/healthz: {body}")
    assert body["status"] == "ok", body


def test_status_names_the_email_channel(host):
    out = host.run("nanobotctl status")
    assert out.rc == 0, out.stdout + out.stderr
    assert "Channel:    telegram enabled, 1 allowed senders" in out.stdout, out.stdout
    assert "Channel:    email enabled, 1 allowed senders" in out.stdout, out.stdout
    assert "IMAP 127.0.0.1:993 (IMAPS)" in out.stdout, out.stdout
    assert "senders must pass DKIM or SPF as judged by mx.nb.test" in out.stdout, out.stdout


def test_telegram_allowed_user_gets_the_reply_and_a_stranger_none(host, telegram, scripted_model):
    since = _now(host)
    tag = uuid.uuid4().hex[:8]
    before = telegram.state()
    telegram.push(STRANGER_TG, f"stranger {tag}", username="stranger")
    telegram.push(ALLOWED_TG, f"hello {tag}", username="owner")

    def finals(state: dict) -> list[str]:  # the model's complete answers in the allowed chat
        return [t for t in _texts_to(state, ALLOWED_TG) if t.startswith(FINAL) and "pid1=" in t]

    known = len(finals(before))

    def replied():
        return finals(telegram.state())[known:]

    final = wait_until(replied, 90, "the model's reply in the allowed user's chat")
    print(f"\nTelegram reply: {final[-1][:120]!r}")
    assert "sandboxed" in final[-1]
    state = telegram.state()
    assert "sendMessage" in state["calls"]
    assert _texts_to(state, STRANGER_TG) == [], "the stranger got an answer"
    assert state["pending"] == 0, "an update was not confirmed"
    assert f"Access denied for sender {STRANGER_TG}" in _journal(host, since)


def test_email_allowed_sender_gets_a_threaded_reply_and_others_none(host, mailhost, scripted_model):
    since = _now(host)
    tag = uuid.uuid4().hex[:8]
    mailhost.deliver(f"stranger {tag}", MALLORY)
    mailhost.deliver(f"forged {tag}", ALICE, authenticated=False)  # From alone proves nothing
    msgid = mailhost.deliver(f"question {tag}", ALICE, body="please run the probe")

    def reply():
        return [m for m in mailhost.sent() if tag in m["subject"]]

    got = wait_until(reply, 90, "the reply mail on the SMTP side")
    print(f"\ne-mail reply: {got[0]['subject']!r} to {got[0]['to']!r}")
    assert len(got) == 1, got
    mail = got[0]
    assert mail["subject"] == f"Re: question {tag}"
    assert mail["to"] == ALICE and mail["from"] == "bot@nb.test"
    assert mail["in_reply_to"] == msgid
    assert mail["auto_submitted"] == "auto-replied"
    assert FINAL in mail["body"] and "sandboxed" in mail["body"]
    # The three were decided in order; only the authenticated, allowed one was answered, and
    # all three are marked \Seen (answered or denied), none left for a second reading.
    flags = mailhost.flags()
    for subject in (f"stranger {tag}", f"forged {tag}", f"question {tag}"):
        assert "\\Seen" in flags[subject], (subject, flags)
    log = _journal(host, since)
    assert f"Access denied for sender {MALLORY} on channel email" in log
    assert "on channel email: not authenticated" in log


def test_firewall_lets_imaps_and_submission_out(host, test_vars):
    status = host.check_output("ufw status")
    for port in (test_vars["nanobot_email_imap_port"], test_vars["nanobot_email_smtp_port"]):
        for v6 in ("", r" \(v6\)"):
            rule = rf"^{port}/tcp{v6}\s+ALLOW OUT\s+Anywhere{v6}\s+# nanobot: email$"
            assert re.search(rule, status, re.M), status
