"""The one IMAP connection of the channel (blocking; the channel runs it in a worker thread).

TLS always, certificates verified (ssl.create_default_context; SSL_CERT_FILE adds a private
CA): IMAPS when imapUseSsl, else STARTTLS, and plain text only with allowInsecure. Messages
are fetched with BODY.PEEK[] so fetching never sets \\Seen; the channel sets it itself.
IDLE (RFC 2177) is spoken by hand, since imaplib lacks it before Python 3.14.
"""

from __future__ import annotations

import contextlib
import imaplib
import logging
import os
import re
import select
import ssl

log = logging.getLogger("nanobot.channels.email")

TIMEOUT = 60.0  # seconds for connect and every command
_UIDS = re.compile(rb"\d+")
_IDLE_TAG = b"NBIDLE"


class ImapError(Exception):
    """The server refused something or the connection broke; the text names the fix."""


def _quote(mailbox: str) -> str:
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'


class ImapClient:
    def __init__(self, cfg, timeout: float = TIMEOUT) -> None:
        self.cfg = cfg
        self.timeout = timeout
        self.imap: imaplib.IMAP4 | None = None
        self.idle_supported = False

    def connect(self) -> None:
        c = self.cfg
        ctx = ssl.create_default_context()
        try:
            if c.imap_use_ssl:
                self.imap = imaplib.IMAP4_SSL(
                    c.imap_host, c.imap_port, ssl_context=ctx, timeout=self.timeout
                )
            else:
                self.imap = imaplib.IMAP4(c.imap_host, c.imap_port, timeout=self.timeout)
                if "STARTTLS" in self.imap.capabilities:
                    self.imap.starttls(ctx)
                elif not c.allow_insecure:
                    raise ImapError(
                        f"{c.imap_host}:{c.imap_port} offers no STARTTLS; set "
                        "channels.email.imapUseSsl to true (port 993), or allowInsecure to "
                        "true to send the password in clear text"
                    )
            self.imap.login(c.imap_username, c.imap_password)
            typ, caps = self.imap.capability()
        except imaplib.IMAP4.error as e:
            raise ImapError(
                f"IMAP login to {c.imap_host} as {c.imap_username} failed ({e}); check "
                "channels.email.imapUsername and imapPassword"
            ) from e
        self.idle_supported = typ == "OK" and b"IDLE" in b" ".join(caps or []).upper().split()

    def _ok(self, typ: str, data, what: str):
        if typ != "OK":
            raise ImapError(f"IMAP {what} failed: {data!r:.200}")
        return data

    def select(self, mailbox: str) -> tuple[int, int]:
        """Select mailbox read-write; (UIDVALIDITY, UIDNEXT)."""
        assert self.imap is not None
        try:
            typ, data = self.imap.select(_quote(mailbox))
        except imaplib.IMAP4.error as e:
            raise ImapError(f"cannot open mailbox {mailbox!r} ({e}); check imapMailbox") from e
        self._ok(typ, data, f"SELECT {mailbox!r} (check channels.email.imapMailbox)")
        validity = self.imap.response("UIDVALIDITY")[1]
        uidnext = self.imap.response("UIDNEXT")[1]
        if not validity or validity[0] is None:
            raise ImapError("the server sent no UIDVALIDITY; it cannot be used safely")
        if not uidnext or uidnext[0] is None:
            typ, data = self.imap.status(_quote(mailbox), "(UIDNEXT)")
            m = re.search(rb"UIDNEXT (\d+)", b" ".join(self._ok(typ, data, "STATUS")))
            uidnext = [m.group(1) if m else b"1"]
        return int(validity[0]), int(uidnext[0])

    def uids_after(self, watermark: int) -> list[int]:
        """UIDs above watermark in the selected mailbox, ascending."""
        assert self.imap is not None
        typ, data = self.imap.uid("SEARCH", None, f"UID {watermark + 1}:*")
        found = self._ok(typ, data, "UID SEARCH")
        uids = {int(u) for chunk in found if chunk for u in _UIDS.findall(chunk)}
        return sorted(u for u in uids if u > watermark)  # "n:*" names the last UID even if < n

    def fetch(self, uid: int) -> bytes | None:
        """The whole message, without setting \\Seen; None when it is gone."""
        assert self.imap is not None
        typ, data = self.imap.uid("FETCH", str(uid), "(BODY.PEEK[])")
        for item in self._ok(typ, data, "UID FETCH"):
            if isinstance(item, tuple) and len(item) == 2:
                return item[1]
        return None

    def mark_seen(self, uids: list[int]) -> None:
        assert self.imap is not None
        if uids:
            typ, data = self.imap.uid(
                "STORE", ",".join(map(str, uids)), "+FLAGS.SILENT", r"(\Seen)"
            )
            self._ok(typ, data, "UID STORE")

    def idle(self, seconds: float, wake_fd: int) -> str:
        """IDLE until the server reports something ("event"), `seconds` pass ("timeout") or a
        byte arrives on wake_fd ("woken"); the IDLE is ended before returning."""
        imap = self.imap
        assert imap is not None
        imap.send(_IDLE_TAG + b" IDLE\r\n")
        line = imap.readline()
        if not line.startswith(b"+"):
            raise ImapError(f"the server refused IDLE: {line[:100]!r}")
        sock = imap.sock
        pending = getattr(sock, "pending", lambda: 0)
        outcome = "timeout"
        if pending():
            outcome = "event"
        else:
            ready, _, _ = select.select([sock, wake_fd], [], [], seconds)
            if wake_fd in ready:
                os.read(wake_fd, 512)
                outcome = "woken"
            if sock in ready:
                outcome = "event"
        imap.send(b"DONE\r\n")
        while True:
            line = imap.readline()
            if not line:
                raise ImapError("the IMAP server closed the connection")
            if line.startswith(b"* BYE"):
                raise ImapError(f"the IMAP server said goodbye: {line[:100]!r}")
            if line.startswith(_IDLE_TAG + b" "):
                if not line.startswith(_IDLE_TAG + b" OK"):
                    raise ImapError(f"IDLE ended with {line[:100]!r}")
                return outcome

    def close(self) -> None:
        if self.imap is None:
            return
        with contextlib.suppress(OSError, imaplib.IMAP4.error):  # it is going away anyway
            self.imap.logout()
        self.imap = None
