"""The real gateway ↔ a real Dovecot (IMAP, mail delivered by LMTP) and a real SMTP server."""

from __future__ import annotations

import logging
import random
import re
import signal
import smtplib
import ssl
import time
from collections import Counter

import pytest
from mailservers import (
    BOT,
    BOT_PASSWORD,
    SMTP_PASSWORD,
    SMTP_USER,
    Dovecot,
    SmtpCapture,
    dovecot_missing,
    mail,
)

from fakes.llm_server import ScriptedLLMServer, last_user_text, reply
from harness import GatewayProcess

KEY = "sk-test-email-secret-0123456789"
ALICE = "alice@example.com"

pytestmark = pytest.mark.skipif(dovecot_missing() is not None, reason=str(dovecot_missing()))


@pytest.fixture
def dovecot():
    d = Dovecot().start()
    yield d
    d.cleanup()


@pytest.fixture
def smtp(dovecot):
    s = SmtpCapture(dovecot.dir).start()
    yield s
    s.stop()


@pytest.fixture
def llm():
    with ScriptedLLMServer("openai") as server:
        server.respond_with(lambda body: reply(f"echo: {last_user_text(body)}"))
        yield server


def config(llm, dovecot, smtp, **email) -> dict:
    return {
        "providers": {"openai": {"apiKey": KEY, "apiBase": llm.url}},
        "agents": {"defaults": {"model": "gpt-test"}},
        "channels": {
            "email": {
                "enabled": True,
                "consentGranted": True,
                "imapHost": "127.0.0.1",
                "imapPort": dovecot.imaps_port,
                "imapUsername": BOT,
                "imapPassword": BOT_PASSWORD,
                "smtpHost": "127.0.0.1",
                "smtpPort": smtp.port,
                "smtpUsername": SMTP_USER,
                "smtpPassword": SMTP_PASSWORD,
                "fromAddress": BOT,
                "allowFrom": [ALICE.upper()],
                "trustedAuthservIds": ["mx.nb.test"],
                **email,
            }
        },
        "security": {"rateLimit": {"messagesPerMinute": 100000, "burst": 1000}},
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


@pytest.fixture
def start(nb, dovecot):
    running: list[GatewayProcess] = []

    def _start(cfg: dict, connected: int = 1) -> GatewayProcess:
        nb.write_config(cfg)
        gw = GatewayProcess(nb, env={"SSL_CERT_FILE": str(dovecot.ca)}).wait_ready()
        running.append(gw)
        if connected:
            wait_for(
                lambda: gw.output().count("e-mail: connected to") >= connected,
                what="the IMAP connection:\n" + gw.output(),
            )
        return gw

    yield _start
    for gw in running:
        gw.stop()


def recorded(nb, count: int) -> bool:
    """The gateway wrote down `count` answered mails (the instant after the SMTP server took
    the last one; a kill between the two is the one window that can repeat a reply)."""
    logs = list((nb.path / "state" / "email").glob("*-sent.log"))
    return bool(logs) and logs[0].read_text().count("key ") >= count


def replies_to(smtp, subject: str) -> list:
    return [m for m in smtp.received() if m["Subject"] == subject]


def test_allowed_sender_gets_a_threaded_reply_within_seconds(llm, dovecot, smtp, start, nb):
    gw = start(config(llm, dovecot, smtp))
    assert "(IDLE)" in gw.output()
    sent = time.monotonic()
    dovecot.deliver(mail("hello there", "What is up?", message_id="<first@example.com>"))
    (answer,) = wait_for(lambda: replies_to(smtp, "Re: hello there"), 10, "the reply")
    assert time.monotonic() - sent < 5  # IDLE, not the 30 s poll interval
    assert answer["To"] == ALICE
    assert answer["From"] == BOT
    assert answer["In-Reply-To"] == "<first@example.com>"
    assert answer["References"] == "<first@example.com>"
    assert answer["Auto-Submitted"] == "auto-replied"
    assert answer["Message-ID"] and answer["Date"]
    assert "What is up?" in answer.get_content()
    assert "E-mail from alice@example.com" in answer.get_content()
    assert smtp.envelopes[-1] == (BOT, [ALICE])
    # \Seen only once the reply went out
    wait_for(lambda: "\\Seen" in dovecot.flags()["hello there"], 5, "\\Seen")
    for secret in (BOT_PASSWORD, SMTP_PASSWORD, KEY):
        assert secret not in gw.output() + nb.all_written_text()


def test_every_mail_of_a_run_is_answered_within_seconds_over_idle(llm, dovecot, smtp, start):
    """20 mails one by one, each a random small gap after the reply to the one before: most
    land just as the channel, woken by its own reply, marks \\Seen and searches again (a mail
    that arrives during that search is reported only behind its answer), the others while
    it idles. Each reply must come within 5 s of its own delivery; a missed report would
    leave the mail waiting for the next IDLE renewal, minutes later."""
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    gw = start(config(llm, dovecot, smtp))
    assert "(IDLE)" in gw.output()
    took: dict[str, float] = {}
    for n in range(20):
        subject = f"Re: run {n}"
        sent = time.monotonic()
        dovecot.deliver(mail(subject[4:]))
        deadline = sent + 5
        while not (got := [t for s, t in smtp.arrived() if s == subject]):
            assert time.monotonic() < deadline, (
                f"mail {n} not answered within 5 s of its delivery (seed {seed}; "
                f"earlier ones took {took})"
            )
            time.sleep(0.002)
        took[subject] = round(got[0] - sent, 2)
        time.sleep(rng.uniform(0, 0.06) if rng.random() < 0.7 else rng.uniform(0.06, 1.0))
    time.sleep(0.5)
    assert Counter(m["Subject"] for m in smtp.received()) == {s: 1 for s in took}


def test_the_smtp_server_authenticates_without_deprecation_noise(dovecot, smtp, caplog):
    ctx = ssl.create_default_context(cafile=str(dovecot.ca))
    caplog.set_level(logging.DEBUG, logger="mail.log")
    for mechanism in ("PLAIN", "LOGIN"):
        with smtplib.SMTP("127.0.0.1", smtp.port, timeout=10) as s:
            s.starttls(context=ctx)
            s.ehlo()
            s.user, s.password = SMTP_USER, SMTP_PASSWORD
            s.auth(mechanism, getattr(s, f"auth_{mechanism.lower()}"))
    with smtplib.SMTP("127.0.0.1", smtp.port, timeout=10) as s:
        s.starttls(context=ctx)
        with pytest.raises(smtplib.SMTPAuthenticationError):
            s.login(SMTP_USER, "wrong-password")
    assert smtp.logins == ["PLAIN", "LOGIN"]
    assert "deprecated" not in caplog.text


def test_strangers_forgeries_and_loops_get_no_answer(llm, dovecot, smtp, start):
    gw = start(config(llm, dovecot, smtp))
    dovecot.deliver(
        mail("stranger", sender="mallory@example.com",
             authres="mx.nb.test; dkim=pass header.d=example.com"),
        mail("forged", authres=None),
        mail("spoofed authres", authres="evil.example; dkim=pass header.d=example.com; "
             "spf=pass smtp.mailfrom=alice@example.com"),
        mail("forged below a fail", authres="mx.nb.test; dkim=fail header.d=example.com; "
             "spf=softfail smtp.mailfrom=alice@example.com",
             headers={"Authentication-Results": "mx.nb.test; dkim=pass header.d=example.com"}),
        mail("auto reply", headers={"Auto-Submitted": "auto-replied"}),
        mail("list mail", headers={"List-Id": "<talk.example.com>"}),
        mail("own mail", sender=BOT),
        mail("precedence", headers={"Precedence": "bulk"}),
    )  # fmt: skip
    dovecot.deliver(mail("bounce"), mail_from="")
    dovecot.deliver(mail("after them all"))
    wait_for(lambda: replies_to(smtp, "Re: after them all"), 10, "the reply to a good mail")
    time.sleep(0.5)
    assert [m["Subject"] for m in smtp.received()] == ["Re: after them all"]
    out = gw.output()
    assert "Access denied for sender mallory@example.com" in out
    assert out.count("not authenticated") == 3, out
    for why in ("Auto-Submitted", "List-Id", "own address", "Precedence", "bounce"):
        assert why in out
    flags = dovecot.flags()
    assert all("\\Seen" in flags[s] for s in ("stranger", "forged", "bounce", "list mail"))
    assert len(llm.requests) == 1


def test_without_consent_the_mailbox_is_not_touched(llm, dovecot, smtp, start):
    gw = start(config(llm, dovecot, smtp, consentGranted=False), connected=0)
    dovecot.deliver(mail("no consent"))
    wait_for(lambda: "consentGranted" in gw.output(), 5, "the consent line")
    time.sleep(1.5)
    assert smtp.received() == []
    assert "Login: user=<bot@nb.test>" not in dovecot.read_log()
    assert gw.output().count("consentGranted is not true") == 1


def test_kill_9_between_fetch_and_reply_answers_exactly_once(llm, dovecot, smtp, start):
    llm.respond_with(lambda body: reply(f"slow echo: {last_user_text(body)}", delay=3))
    gw = start(config(llm, dovecot, smtp))
    dovecot.deliver(mail("crash test"))
    llm.wait_for_requests(1)
    gw.signal(signal.SIGKILL)
    gw.wait()
    llm.respond_with(lambda body: reply(f"echo: {last_user_text(body)}"))
    start(config(llm, dovecot, smtp))
    wait_for(lambda: replies_to(smtp, "Re: crash test"), 15, "the reply after the restart")
    dovecot.deliver(mail("after the crash"))
    wait_for(lambda: replies_to(smtp, "Re: after the crash"), 10, "a later reply")
    time.sleep(0.5)
    assert len(replies_to(smtp, "Re: crash test")) == 1


@pytest.mark.parametrize("mark_seen", [False, True])
def test_restart_answers_nothing_twice_and_skips_nothing(llm, dovecot, smtp, start, mark_seen, nb):
    cfg = config(llm, dovecot, smtp, markSeen=mark_seen)
    gw = start(cfg)
    dovecot.deliver(mail("one"))
    wait_for(lambda: replies_to(smtp, "Re: one"), 10, "the first reply")
    wait_for(lambda: recorded(nb, 1), 5, "the record of the reply")
    gw.signal(signal.SIGKILL)
    gw.wait()
    dovecot.deliver(mail("while down"))
    start(cfg)
    wait_for(lambda: replies_to(smtp, "Re: while down"), 10, "mail that came while down")
    dovecot.deliver(mail("two"))
    wait_for(lambda: replies_to(smtp, "Re: two"), 10, "the second reply")
    time.sleep(0.5)
    subjects = Counter(m["Subject"] for m in smtp.received())
    assert subjects == {"Re: one": 1, "Re: while down": 1, "Re: two": 1}
    assert ("\\Seen" in dovecot.flags()["one"]) is mark_seen


def test_html_big_and_hostile_attachments_are_handled_safely(llm, dovecot, smtp, start, nb):
    start(config(llm, dovecot, smtp))
    html = (
        b"Content-Type: text/html; charset=utf-8\r\n\r\n"
        b"<html><head><style>p{}</style><script>alert(1)</script></head>"
        b"<body><p>Hello <b>from</b> HTML</p><ul><li>first</li></ul></body></html>\r\n"
    )
    boundary = "XYZ"
    big = b"A" * (10 * 1024 * 1024)
    import base64

    def part(headers: str, data: bytes) -> bytes:
        encoded = base64.encodebytes(data)
        return (
            (f"--{boundary}\r\n{headers}\r\nContent-Transfer-Encoding: base64\r\n\r\n").encode()
            + encoded
            + b"\r\n"
        )

    multipart = (
        f"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary={boundary}\r\n\r\n".encode()
        + part("Content-Type: text/plain; charset=utf-8", b"see attached")
        + part('Content-Type: text/plain\r\nContent-Disposition: attachment; '
               'filename="../../../etc/passwd"', b"root:x:0:0\n")
        + part('Content-Type: application/pdf\r\nContent-Disposition: attachment; '
               'filename="big.pdf"', big)
        + f"--{boundary}--\r\n".encode()
    )  # fmt: skip
    dovecot.deliver(mail("html only", raw_body=html), mail("attachments", raw_body=multipart))
    (h,) = wait_for(lambda: replies_to(smtp, "Re: html only"), 10, "the HTML reply")
    text = h.get_content()
    assert "Hello from HTML" in text and "- first" in text
    assert "alert" not in text and "<b>" not in text
    (a,) = wait_for(lambda: replies_to(smtp, "Re: attachments"), 20, "the attachment reply")
    text = a.get_content()
    assert "- passwd (text/plain, 11 bytes): saved as" in text
    assert "big.pdf (application/pdf, 10.0 MB): not saved (larger than maxAttachmentSize)" in text
    saved = re.findall(r"saved as (\S+)", text)
    assert len(saved) == 1 and re.fullmatch(r".*/media/email/[0-9a-f]{24}\.txt", saved[0])
    assert not any(p.name == "passwd" for p in nb.path.rglob("*"))


def test_dovecot_restart_is_survived(llm, dovecot, smtp, start):
    gw = start(config(llm, dovecot, smtp))
    # A restart of an established session (stopped mid-login, the attempt waits for its timeout).
    wait_for(lambda: "e-mail: connected to" in gw.output(), 20, "the first connection")
    dovecot.stop()
    wait_for(lambda: "reconnecting in" in gw.output(), 10, "the lost connection")
    dovecot.start()
    wait_for(lambda: gw.output().count("e-mail: connected to") >= 2, 40, "the reconnection")
    dovecot.deliver(mail("after restart"))
    wait_for(lambda: replies_to(smtp, "Re: after restart"), 10, "the reply")


def test_a_hundred_mails_at_once_are_all_answered_once(llm, dovecot, smtp, start):
    start(config(llm, dovecot, smtp))
    dovecot.deliver(*(mail(f"bulk {n}") for n in range(100)))
    wait_for(lambda: len(smtp.received()) >= 100, 90, "100 replies")
    time.sleep(1)
    subjects = Counter(m["Subject"] for m in smtp.received())
    assert subjects == {f"Re: bulk {n}": 1 for n in range(100)}


def test_without_idle_the_mailbox_is_polled(llm, dovecot, smtp, nb):
    plain = Dovecot(idle=False).start()
    bundle = plain.dir / "bundle.pem"
    bundle.write_bytes(plain.ca.read_bytes() + dovecot.ca.read_bytes())  # smtp uses dovecot's
    bundle.chmod(0o644)
    dovecot = plain
    try:
        nb.write_config(config(llm, dovecot, smtp, pollIntervalSeconds=5))
        gw = GatewayProcess(nb, env={"SSL_CERT_FILE": str(bundle)}).wait_ready()
        try:
            wait_for(lambda: "polling every 5 s" in gw.output(), 15, "the polling connection")
            dovecot.deliver(mail("polled"))
            wait_for(lambda: replies_to(smtp, "Re: polled"), 12, "the polled reply")
            # Delivered just after a reply (the channel has just looked): found by the next
            # poll, one interval later, not the one after it.
            for n in range(2):
                sent = time.monotonic()
                dovecot.deliver(mail(f"polled {n}"))
                wait_for(lambda n=n: replies_to(smtp, f"Re: polled {n}"), 12, "a polled reply")
                assert time.monotonic() - sent < 5 + 1.5, f"mail {n}: more than one interval"
        finally:
            gw.stop()
    finally:
        dovecot.cleanup()


def test_auto_reply_off_reads_and_records_only(llm, dovecot, smtp, start):
    gw = start(config(llm, dovecot, smtp, autoReplyEnabled=False))
    dovecot.deliver(mail("recorded only"))
    wait_for(lambda: "autoReplyEnabled is false" in gw.output(), 15, "the recorded reply")
    assert smtp.received() == []
    wait_for(lambda: "\\Seen" in dovecot.flags()["recorded only"], 5, "\\Seen")
