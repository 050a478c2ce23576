"""One fetched message, parsed: who wrote it, what they wrote, what is attached.

The sender is the single address of the From header, parsed with email.utils and lower-cased;
a From with no address, several addresses or a malformed one gives sender "" (never admitted).
The body prefers text/plain and falls back to HTML turned into text; it is cut at max_chars
with a visible marker. Attachment names are the sender's choice: they are only shown, after
cleaning, and never used as a file name (see media.py).
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import re
from dataclasses import dataclass, field
from email.message import EmailMessage, Message

from nanobot.channels.email.htmltext import html_to_text

TRUNCATED = "\n\n[… message cut at {n} characters …]"
MAX_PARTS = 200  # MIME parts looked at per message (a message of a million parts is an attack)
_ID = re.compile(r"<[^<>\s]{1,250}>")
_UNSAFE_NAME = re.compile(r"[^\w.\- ]+")


@dataclass
class Attachment:
    name: str  # cleaned, for display only
    content_type: str
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass
class Mail:
    msg: Message
    sender: str  # bare lower-case address, "" when From is not exactly one address
    subject: str
    date: str
    message_id: str  # "<id@host>" or ""
    references: list[str]
    body: str
    attachments: list[Attachment] = field(default_factory=list)

    def header(self, name: str) -> str:
        """The first `name` header as one clean line ("" when absent or unreadable)."""
        return header_text(self.msg, name)

    def headers(self, name: str) -> list[str]:
        try:
            values = self.msg.get_all(name) or []
        except (ValueError, TypeError, LookupError, IndexError):
            return []
        return [_one_line(str(v)) for v in values]


def _one_line(value: str) -> str:
    return " ".join(value.split())


def header_text(msg: Message, name: str) -> str:
    try:
        value = msg.get(name)
    except (ValueError, TypeError, LookupError, IndexError):  # malformed header, e.g. bad encoding
        return ""
    return "" if value is None else _one_line(str(value))


def sender_address(from_value: str) -> str:
    """The one address in a From value, lower-cased; "" unless there is exactly one."""
    pairs = email.utils.getaddresses([from_value])
    addrs = [addr for _, addr in pairs if addr]
    if len(addrs) != 1 or len(pairs) != 1:
        return ""
    addr = addrs[0]
    if addr.count("@") != 1 or any(c.isspace() or not c.isprintable() for c in addr):
        return ""
    local, _, domain = addr.partition("@")
    return addr.lower() if local and "." in domain else ""


def message_ids(value: str) -> list[str]:
    return _ID.findall(value or "")


def safe_name(name: str | None) -> str:
    """A sender-chosen file name made safe to show: no path, no control characters, short."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = _UNSAFE_NAME.sub("_", base).strip(" .")
    return base[:80] or "attachment"


def _text_of(part: Message) -> str:
    try:
        return part.get_content() if isinstance(part, EmailMessage) else ""
    except (LookupError, ValueError, AssertionError, KeyError):  # unknown charset, bad encoding
        payload = part.get_payload(decode=True) or b""
        return payload.decode("utf-8", "replace")


def _body_part(msg: EmailMessage) -> Message | None:
    try:
        return msg.get_body(preferencelist=("plain", "html"))
    except (ValueError, TypeError, LookupError, IndexError, AttributeError):
        return None


def _is_attachment(part: Message) -> bool:
    disposition = (part.get_content_disposition() or "").lower()
    if disposition == "attachment" or part.get_filename():
        return True
    return part.get_content_maintype() not in ("text", "multipart")


def parse_mail(raw: bytes, max_chars: int) -> Mail:
    """Parse raw RFC 5322 bytes; never raises for malformed mail (it yields empty fields)."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    body_part = _body_part(msg)
    text = ""
    if body_part is not None:
        text = _text_of(body_part)
        if body_part.get_content_subtype() == "html":
            text = html_to_text(text)
    text = text.replace("\r\n", "\n").strip()
    if len(text) > max_chars:
        text = text[:max_chars] + TRUNCATED.format(n=max_chars)
    attachments: list[Attachment] = []
    for n, part in enumerate(msg.walk()):
        if n >= MAX_PARTS:
            break
        if part.is_multipart() or part is body_part or not _is_attachment(part):
            continue
        try:
            data = part.get_payload(decode=True) or b""
            filename = part.get_filename()
        except (ValueError, TypeError, LookupError, IndexError):
            continue
        attachments.append(Attachment(safe_name(filename), part.get_content_type(), data))
    return Mail(
        msg=msg,
        sender=sender_address(header_text(msg, "From")),
        subject=header_text(msg, "Subject"),
        date=header_text(msg, "Date"),
        message_id=(message_ids(header_text(msg, "Message-ID")) or [""])[0],
        references=message_ids(header_text(msg, "References")),
        body=text,
        attachments=attachments,
    )
