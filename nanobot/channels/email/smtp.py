"""Replies out over SMTP: threaded (In-Reply-To, References, "Re: " subject), marked as
automatic (Auto-Submitted: auto-replied, RFC 3834), Markdown rendered to plain text.

TLS always, certificates verified: SMTPS when smtpUseSsl, else STARTTLS when smtpUseTls (the
server must offer it); plain SMTP only with allowInsecure.
"""

from __future__ import annotations

import mimetypes
import re
import smtplib
import ssl
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

TIMEOUT = 60.0
MAX_REFERENCES = 10

_FENCE = re.compile(r"^```[^\n]*\n?", re.M)
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_ITALIC = re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])")
_CODE = re.compile(r"`([^`\n]+)`")
_LINK = re.compile(r"\[([^\]\n]+)\]\((\S+?)\)")
_HEADING = re.compile(r"^#{1,6}\s+", re.M)


class SmtpError(Exception):
    """Sending failed; `permanent` when trying again cannot help (recipient refused …)."""

    def __init__(self, text: str, permanent: bool = False) -> None:
        super().__init__(text)
        self.permanent = permanent


def markdown_to_text(md: str) -> str:
    """The model's Markdown as plain text a mail reader shows well."""
    text = _FENCE.sub("", md)
    text = _LINK.sub(lambda m: m.group(1) if m.group(1) == m.group(2) else f"{m[1]} ({m[2]})", text)
    text = _BOLD.sub(r"\2", text)
    text = _ITALIC.sub(r"\1", text)
    text = _CODE.sub(r"\1", text)
    return _HEADING.sub("", text).strip() + "\n"


def _one_line(value: str) -> str:
    return " ".join(str(value).split())


def reply_subject(subject: str, prefix: str) -> str:
    subject = _one_line(subject)
    if subject.lower().startswith("re:"):
        return subject
    return (prefix + subject).strip() or "Re:"


def build_message(
    from_address: str, to: str, text: str, meta: dict, prefix: str, files: list[str] = ()
) -> EmailMessage:
    """The reply (or a new mail when meta holds no inbound Message-ID), `files` attached."""
    msg = EmailMessage()
    msg["From"] = from_address
    msg["To"] = to
    msg["Subject"] = reply_subject(str(meta.get("subject", "")), prefix)
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid("nanobot", domain=from_address.rpartition("@")[2] or None)
    inbound = str(meta.get("message_id") or "")
    if inbound:
        refs = [r for r in meta.get("references", []) if isinstance(r, str)]
        msg["In-Reply-To"] = inbound
        msg["References"] = " ".join([*refs[-(MAX_REFERENCES - 1) :], inbound])
    msg["Auto-Submitted"] = "auto-replied"
    msg["X-Auto-Response-Suppress"] = "All"  # no out-of-office answers to our answers
    msg.set_content(markdown_to_text(text))
    for name in files:
        path = Path(name)
        kind = (mimetypes.guess_type(path.name)[0] or "application/octet-stream").split("/", 1)
        msg.add_attachment(path.read_bytes(), kind[0], kind[1], filename=path.name)
    return msg


def send_message(
    cfg, msg: EmailMessage, on_accepted: Callable[[], None], timeout: float = TIMEOUT
) -> None:
    """Deliver msg through the configured server (blocking). Raises SmtpError.

    on_accepted runs as soon as the server took the message, before QUIT, so that the record
    of it is written as close as possible to the server's acceptance."""
    ctx = ssl.create_default_context()
    try:
        if cfg.smtp_use_ssl:
            conn = smtplib.SMTP_SSL(cfg.smtp_host, cfg.smtp_port, timeout=timeout, context=ctx)
        else:
            conn = smtplib.SMTP(cfg.smtp_host, cfg.smtp_port, timeout=timeout)
        with conn:
            if not cfg.smtp_use_ssl:
                conn.ehlo()
                if cfg.smtp_use_tls:
                    if not conn.has_extn("starttls"):
                        raise SmtpError(
                            f"{cfg.smtp_host}:{cfg.smtp_port} offers no STARTTLS; set "
                            "channels.email.smtpUseSsl (port 465) or check smtpPort",
                            permanent=True,
                        )
                    conn.starttls(context=ctx)
                    conn.ehlo()
            if cfg.smtp_username:
                conn.login(cfg.smtp_username, cfg.smtp_password)
            conn.send_message(msg, from_addr=cfg.from_address, to_addrs=[str(msg["To"])])
            on_accepted()
    except smtplib.SMTPAuthenticationError as e:
        raise SmtpError(
            f"SMTP login to {cfg.smtp_host} failed ({e.smtp_code}); check "
            "channels.email.smtpUsername and smtpPassword",
            permanent=True,
        ) from e
    except smtplib.SMTPRecipientsRefused as e:
        raise SmtpError(f"the server refused the recipient ({e.recipients})", True) from e
    except smtplib.SMTPResponseException as e:
        raise SmtpError(f"SMTP error {e.smtp_code}", permanent=500 <= e.smtp_code < 600) from e
    except ssl.SSLCertVerificationError as e:
        raise SmtpError(
            f"the certificate of {cfg.smtp_host} is not trusted ({e.verify_message})", True
        ) from e
    except (smtplib.SMTPException, OSError) as e:
        raise SmtpError(f"cannot reach {cfg.smtp_host}:{cfg.smtp_port} ({e})") from e
