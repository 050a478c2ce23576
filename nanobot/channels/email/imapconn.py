"""imaplib connections that read through one buffer of their own.

imaplib reads lines through a private buffered file; what that file has already taken from the
socket is invisible to select(), so an IDLE wait could sleep on a line that arrived in the same
packet as the one before it ("+ idling" and "* 3 EXISTS" together, say). These subclasses
override read() and readline(), which imaplib documents as overridable, to read from a
bytearray this module owns: `line()` hands out a complete buffered line without blocking and
`fill()` takes what the socket holds without waiting, so the IDLE loop never depends on packet
boundaries. After STARTTLS the buffer must be empty: plain text the server (or someone in the
path) sent behind the "OK" would otherwise be read as if it came over TLS, so it is refused.
"""

from __future__ import annotations

import imaplib
import ssl

_CHUNK = 65536
MAX_LINE = imaplib._MAXLINE  # imaplib's own limit for one line (1,000,000 bytes)


class InjectionError(imaplib.IMAP4.abort):
    """The server sent data behind its STARTTLS answer (a plain-text injection)."""


class _Buffered:
    """The read side: readline/read (for imaplib) and line/fill/buffered (for IDLE)."""

    sock: ssl.SSLSocket

    def __init__(self, *args, **kwargs) -> None:
        self._inbuf = bytearray()
        self._scanned = 0  # bytes of _inbuf known to hold no b"\n"
        super().__init__(*args, **kwargs)

    def _recv(self) -> bool:
        """One blocking read (the socket's timeout applies); False at end of stream."""
        data = self.sock.recv(_CHUNK)
        self._inbuf += data
        return bool(data)

    def fill(self) -> None:
        """Take what the socket holds now without waiting; raise abort at end of stream."""
        sock = self.sock
        timeout = sock.gettimeout()
        sock.setblocking(False)
        try:
            data = sock.recv(_CHUNK)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            return  # only TLS housekeeping, or nothing yet
        finally:
            sock.settimeout(timeout)
        if not data:
            raise imaplib.IMAP4.abort("the IMAP server closed the connection")
        self._inbuf += data

    def pending(self) -> bool:
        """Bytes TLS has decrypted but nobody read yet (select() does not see them)."""
        return bool(getattr(self.sock, "pending", lambda: 0)())

    def line(self) -> bytes | None:
        """A complete line from the buffer (CRLF included), or None without reading."""
        at = self._inbuf.find(b"\n", self._scanned)
        if at < 0:
            self._scanned = len(self._inbuf)
            if self._scanned > MAX_LINE:
                raise imaplib.IMAP4.error(f"got more than {MAX_LINE} bytes in one line")
            return None
        out = bytes(self._inbuf[: at + 1])
        del self._inbuf[: at + 1]
        self._scanned = 0
        return out

    def readline(self) -> bytes:
        """Read one line (imaplib's contract: b"" or a partial line at end of stream)."""
        while True:
            got = self.line()
            if got is not None:
                return got
            if not self._recv():
                out = bytes(self._inbuf)
                self._inbuf.clear()
                self._scanned = 0
                return out

    def read(self, size: int) -> bytes:
        """Read exactly size bytes (fewer only at end of stream): a literal's body."""
        while len(self._inbuf) < size and self._recv():
            pass
        out = bytes(self._inbuf[:size])
        del self._inbuf[:size]
        self._scanned = 0
        return out

    def starttls(self, ssl_context: ssl.SSLContext):
        """imaplib's starttls with one more step: nothing may be buffered between the "OK"
        and the TLS handshake (imaplib would read it afterwards as if it came over TLS)."""
        if self._tls_established:
            raise self.abort("TLS session already established")
        if "STARTTLS" not in self.capabilities:
            raise self.abort("TLS not supported by server")
        typ, dat = self._simple_command("STARTTLS")
        if typ != "OK":
            raise self.error("Couldn't establish TLS session")
        if self._inbuf:
            self._inbuf.clear()
            raise InjectionError(
                "the IMAP server sent data behind its STARTTLS answer (a plain-text "
                "injection); refusing the connection"
            )
        self.sock = ssl_context.wrap_socket(self.sock, server_hostname=self.host)
        self.file = self.sock.makefile("rb")  # unread; imaplib's shutdown() closes it
        self._tls_established = True
        self._get_capabilities()
        return typ, dat


class Imap(_Buffered, imaplib.IMAP4):
    """IMAP4 (plain, then STARTTLS) with the visible read buffer."""


class ImapSsl(_Buffered, imaplib.IMAP4_SSL):
    """IMAP4 over TLS from the first byte, with the visible read buffer."""
