"""The one IMAP connection of the channel (blocking; the channel runs it in a worker thread).

TLS always, certificates verified (ssl.create_default_context; SSL_CERT_FILE adds a private
CA): IMAPS when imapUseSsl, else STARTTLS, and plain text only with allowInsecure. Messages
are fetched with BODY.PEEK[] so fetching never sets \\Seen; the channel sets it itself.
IDLE (RFC 2177) is spoken by hand, since imaplib lacks it before Python 3.14, over the
connection classes of imapconn.py, whose read buffer the IDLE loop can see.

New mail is never missed between two looks: a server shows a session new mail only once it
has told the session about it (an untagged EXISTS), and it may tell it at the end of any
command, after that command's work (Dovecot reports mail that came in during a UID SEARCH
behind the search's own, older answer). So uids_after() starts with NOOP (the mailbox's
view is brought up to date) and then searches; whatever the server reports from then on
(EXISTS, RECENT, EXPUNGE, FETCH) is noted, `changes_pending()` says so, and idle() does not
even start IDLE while anything is pending: the channel looks again first. Updates that come
with the IDLE's "+" continuation, or in the same packet as any other line, count too.
"""

from __future__ import annotations

import contextlib
import imaplib
import logging
import os
import re
import select
import ssl
import time

from nanobot.channels.email.imapconn import Imap, ImapSsl, InjectionError

log = logging.getLogger("nanobot.channels.email")

TIMEOUT = 60.0  # seconds for connect and every command
_UIDS = re.compile(rb"\d+")
_IDLE_TAG = b"NBIDLE"
CHANGES = ("EXISTS", "RECENT", "EXPUNGE", "FETCH")  # what makes the channel look again
_CHANGE_LINE = re.compile(rb"\* \d+ (EXISTS|RECENT|EXPUNGE|FETCH)\b", re.I)


class ImapError(Exception):
    """The server refused something or the connection broke; the text names the fix."""


def _quote(mailbox: str) -> str:
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'


class ImapClient:
    def __init__(self, cfg, timeout: float = TIMEOUT) -> None:
        self.cfg = cfg
        self.timeout = timeout
        self.imap: Imap | ImapSsl | None = None
        self.idle_supported = False

    def connect(self) -> None:
        c = self.cfg
        ctx = ssl.create_default_context()
        try:
            if c.imap_use_ssl:
                self.imap = ImapSsl(c.imap_host, c.imap_port, ssl_context=ctx, timeout=self.timeout)
            else:
                self.imap = Imap(c.imap_host, c.imap_port, timeout=self.timeout)
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
        except InjectionError as e:
            raise ImapError(f"{c.imap_host}:{c.imap_port}: {e}") from e
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

    def changes_pending(self) -> bool:
        """Did the server report a change of the mailbox since the last uids_after() began
        searching? Then that search may not have seen it: look again before waiting."""
        assert self.imap is not None
        return any(self.imap.untagged_responses.get(k) for k in CHANGES)

    def _forget_changes(self) -> None:
        assert self.imap is not None
        for key in CHANGES:  # imaplib would keep them (and grow) forever
            self.imap.untagged_responses.pop(key, None)

    def uids_after(self, watermark: int) -> list[int]:
        """UIDs above watermark in the selected mailbox, ascending. A NOOP first brings the
        session's view of the mailbox up to date, so every mail delivered before it is seen
        (polling needs this: the search alone runs on the view of the previous command)."""
        assert self.imap is not None
        self._ok(*self.imap.noop(), "NOOP")
        self._forget_changes()  # reported before the search: the search covers them
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
        """IDLE until the server reports a change ("event"), `seconds` pass ("timeout") or a
        byte arrives on wake_fd ("woken"); the IDLE is ended before returning. Returns
        "event" at once, without IDLE, when a change is already pending (changes_pending)."""
        imap = self.imap
        assert imap is not None
        if self.changes_pending():
            return "event"
        if _readable(wake_fd, 0):
            os.read(wake_fd, 512)
            return "woken"
        deadline = time.monotonic() + seconds
        imap.send(_IDLE_TAG + b" IDLE\r\n")
        outcome = ""
        while True:  # updates may come before the continuation, or in its packet
            line = self._next_line()
            if line.startswith(b"+"):
                break
            if line.startswith(_IDLE_TAG + b" "):
                raise ImapError(f"the server refused IDLE: {line[:100]!r}")
            outcome = self._untagged(line) or outcome
        while not outcome:
            line = imap.line()
            if line is not None:
                if line.startswith(_IDLE_TAG + b" "):  # the server ended the IDLE itself
                    return self._tagged_end(line, "event")
                outcome = self._untagged(line)
                continue
            if imap.pending():  # decrypted bytes that select() cannot see
                imap.fill()
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                outcome = "timeout"
                break
            ready, _, _ = select.select([imap.sock, wake_fd], [], [], remaining)
            if wake_fd in ready:
                os.read(wake_fd, 512)
                outcome = "woken"
            elif ready:
                imap.fill()
        imap.send(b"DONE\r\n")
        while True:
            line = self._next_line()
            if line.startswith(_IDLE_TAG + b" "):
                return self._tagged_end(line, outcome)
            self._untagged(line)  # a change now is in the view the next search uses

    def _next_line(self) -> bytes:
        assert self.imap is not None
        line = self.imap.readline()
        if not line.endswith(b"\n"):
            raise ImapError("the IMAP server closed the connection")
        return line

    def _untagged(self, line: bytes) -> str:
        """ "event" for a mailbox change; raises on BYE; "" for anything else."""
        if line.upper().startswith(b"* BYE"):
            raise ImapError(f"the IMAP server said goodbye: {line[:100]!r}")
        return "event" if _CHANGE_LINE.match(line) else ""

    def _tagged_end(self, line: bytes, outcome: str) -> str:
        if not line.startswith(_IDLE_TAG + b" OK"):
            raise ImapError(f"IDLE ended with {line[:100]!r}")
        return outcome

    def close(self) -> None:
        if self.imap is None:
            return
        with contextlib.suppress(OSError, imaplib.IMAP4.error):  # it is going away anyway
            self.imap.logout()
        self.imap = None


def _readable(fd: int, timeout: float) -> bool:
    return bool(select.select([fd], [], [], timeout)[0])
