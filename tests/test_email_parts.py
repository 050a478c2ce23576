"""The e-mail channel's pure parts: parsing, HTML, sender authentication, loops, state, replies."""

from __future__ import annotations

import json

import pytest

from nanobot.channels.email import authres
from nanobot.channels.email.htmltext import html_to_text
from nanobot.channels.email.loops import loop_reason
from nanobot.channels.email.parse import parse_mail, safe_name, sender_address
from nanobot.channels.email.settings import check_config
from nanobot.channels.email.smtp import build_message, markdown_to_text, reply_subject
from nanobot.channels.email.state import MailboxState, SentLog
from nanobot.config.schema import EmailConfig
from nanobot.errors import ConfigError
from nanobot.security.access import is_allowed


def raw(headers: str, body: str = "hi") -> bytes:
    return (headers.strip().replace("\n", "\r\n") + "\r\n\r\n" + body).encode()


@pytest.mark.parametrize(
    "value,expected",
    [
        ("Alice <Alice@Example.COM>", "alice@example.com"),
        ("alice@example.com", "alice@example.com"),
        ("a@example.com, b@example.com", ""),
        ("Alice", ""),
        ("<>", ""),
        ('"evil@x.com" <a@example.com>', "a@example.com"),
        ("a@b@example.com", ""),
    ],
)
def test_sender_is_exactly_one_address(value, expected):
    assert sender_address(value) == expected


def test_plain_text_is_preferred_and_cut_with_a_marker():
    body = (
        "--B\r\nContent-Type: text/plain\r\n\r\n" + "x" * 500 + "\r\n"
        "--B\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n--B--\r\n"
    )
    m = parse_mail(
        raw("From: a@example.com\nContent-Type: multipart/alternative; boundary=B", body), 100
    )
    assert m.body.startswith("x" * 100) and "cut at 100 characters" in m.body
    assert m.attachments == []


def test_html_becomes_readable_text_without_scripts():
    text = html_to_text(
        "<html><head><title>t</title><style>a{}</style></head><body><h1>Title</h1>"
        "<p>One&nbsp;<i>two</i></p><script>evil()</script><ul><li>a</li><li>b</li></ul>"
        '<a href="https://example.com/x">link</a><br>end</body></html>'
    )
    assert text == "Title\n\nOne two\n\n- a\n- b\n\nlink (https://example.com/x)\nend"


def test_attachment_names_are_only_shown_after_cleaning():
    assert safe_name("../../../etc/passwd") == "passwd"
    assert safe_name("..\\..\\boot.ini") == "boot.ini"
    assert safe_name("a\x00b\nc.txt") == "a_b_c.txt"
    assert safe_name("...") == "attachment"


MX = "mx.example.net"


def check(headers, domain="example.com", **kw):
    kw.setdefault("dkim", True)
    kw.setdefault("spf", True)
    return authres.check(headers, domain, [MX], **kw)


def test_trusted_aligned_dkim_or_spf_pass_authenticates():
    assert check([f"{MX}; dkim=pass header.d=example.com"]).ok
    assert check([f"{MX}; dkim=pass (good sig) header.i=@mail.example.com"]).ok
    assert check([f"{MX}; spf=pass smtp.mailfrom=bounce@example.com"]).ok
    assert check([f"{MX}; dmarc=pass header.from=example.com"]).ok
    assert check([f"{MX.upper()} 1; dkim = pass header.d=example.com"]).ok


def test_untrusted_unaligned_failing_or_switched_off_does_not():
    assert not check(["evil.example; dkim=pass header.d=example.com"]).ok
    assert not check([f"{MX}; dkim=pass header.d=attacker.com"]).ok
    assert not check([f"{MX}; dkim=pass header.d=com"], domain="example.com").ok
    assert not check([f"{MX}; dkim=fail header.d=example.com"]).ok
    assert not check([f"{MX}; dkim=pass header.d=example.com"], dkim=False).ok
    assert not check([f"{MX}; spf=pass smtp.mailfrom=x@example.com"], spf=False).ok
    assert not check([]).ok
    # a comment or reason that says "pass" is not a result
    assert not check([f'{MX}; dkim=fail (dkim=pass) reason="dkim=pass" header.d=example.com']).ok


def test_only_the_topmost_trusted_header_counts():
    forged_below = [
        f"{MX}; dkim=fail header.d=example.com",
        f"{MX}; dkim=pass header.d=example.com",
    ]
    assert not check(forged_below).ok
    untrusted_on_top = ["other.example; dkim=fail", f"{MX}; spf=pass smtp.mailfrom=a@example.com"]
    assert check(untrusted_on_top).ok


def mail_with(headers: str, body: str = "hi"):
    return parse_mail(raw(headers, body), 1000)


@pytest.mark.parametrize(
    "headers,reason",
    [
        ("From: bot@example.org", "own address"),
        ("From: a@example.com\nAuto-Submitted: auto-replied", "Auto-Submitted"),
        ("From: a@example.com\nPrecedence: list", "Precedence"),
        ("From: a@example.com\nList-Id: <l.example.com>", "List-Id"),
        ("From: a@example.com\nReturn-Path: <>", "bounce"),
        ("From: MAILER-DAEMON@example.com", "daemon"),
        ("From: a@example.com\nMessage-ID: <ours@example.org>", "we sent"),
        ("From: a@example.com\nContent-Type: multipart/report; boundary=x", "report"),
        ("From: nobody", "exactly one"),
    ],
)
def test_mail_that_would_loop_is_never_answered(headers, reason):
    got = loop_reason(mail_with(headers), {"bot@example.org"}, {"<ours@example.org>"})
    assert got is not None and reason in got


def test_ordinary_mail_is_answered():
    m = mail_with("From: a@example.com\nAuto-Submitted: no\nReturn-Path: <a@example.com>")
    assert loop_reason(m, {"bot@example.org"}, set()) is None


def test_allow_from_matches_the_address_case_insensitively_and_exactly():
    assert is_allowed("email", "alice@example.com", ["Alice@Example.com"])
    assert not is_allowed("email", "alice@example.com.evil", ["alice@example.com"])
    assert not is_allowed("email", "Alice <alice@example.com>", ["alice@example.com"])


def test_state_survives_and_the_watermark_moves(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOBOT_HOME", str(tmp_path))
    s = MailboxState(tmp_path / "state", "acct")
    assert s.open(7, 10) is True  # first look: UIDs 1..9 left alone
    assert s.is_handled(9) and not s.is_handled(10)
    s.done(11, seen_key="k11")
    s.advance([10, 11])
    assert s.watermark == 9 and s.handled == {11}
    s.done(10)
    s.advance([10, 11, 12])
    assert s.watermark == 11
    again = MailboxState(tmp_path / "state", "acct")
    assert again.open(7, 99) is False
    assert (again.watermark, again.unseen) == (11, {11: "k11"})
    assert again.open(8, 3) is True and again.watermark == 2 and not again.unseen
    assert json.loads(again.path.read_text())["uidvalidity"] == 8
    log = SentLog(tmp_path / "state", "acct")
    log.record("email-x-7-11", "<m1@example.org>")
    reread = SentLog(tmp_path / "state", "acct")
    assert reread.answered("email-x-7-11") and "<m1@example.org>" in reread.ids


def test_reply_threads_and_marks_itself_automatic():
    meta = {"message_id": "<in@example.com>", "subject": "Plans", "references": ["<r0@x>"]}
    msg = build_message(
        "bot@example.org", "a@example.com", "**Yes** see [docs](https://d.x)", meta, "Re: "
    )
    assert msg["Subject"] == "Re: Plans"
    assert msg["In-Reply-To"] == "<in@example.com>"
    assert msg["References"] == "<r0@x> <in@example.com>"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["Message-ID"].endswith("@example.org>") and msg["Date"]
    assert msg.get_content() == "Yes see docs (https://d.x)\n"
    assert reply_subject("RE: x", "Re: ") == "RE: x"
    assert reply_subject("a\r\nBcc: evil@x", "Re: ") == "Re: a Bcc: evil@x"
    assert markdown_to_text("# Head\n`code`") == "Head\ncode\n"


def cfg(**kw):
    base = dict(
        imapHost="imap.x", imapUsername="u", imapPassword="p", smtpHost="smtp.x",
        fromAddress="bot@x.org", trustedAuthservIds=["mx.x.org"],
    )  # fmt: skip
    base.update(kw)
    c = EmailConfig()
    for k, v in base.items():
        snake = "".join("_" + ch.lower() if ch.isupper() else ch for ch in k)
        setattr(c, snake, v)
    return c


@pytest.mark.parametrize(
    "change,key",
    [
        ({"imapHost": ""}, "imapHost"),
        ({"fromAddress": ""}, "fromAddress"),
        ({"fromAddress": "Bot <bot@x.org>"}, "fromAddress"),
        ({"smtpHost": ""}, "smtpHost"),
        ({"smtpUseTls": False, "smtpUseSsl": False}, "allowInsecure"),
        ({"trustedAuthservIds": []}, "trustedAuthservIds"),
    ],
)
def test_a_config_that_cannot_work_names_the_key(change, key):
    check_config(cfg())
    with pytest.raises(ConfigError, match=key):
        check_config(cfg(**change))


def test_sender_authentication_can_be_switched_off_explicitly():
    check_config(cfg(trustedAuthservIds=[], verifyDkim=False, verifySpf=False))
    check_config(cfg(smtpHost="", autoReplyEnabled=False))
