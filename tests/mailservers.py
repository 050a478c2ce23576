"""Real mail servers for the e-mail tests: Dovecot (IMAP, IMAPS, LMTP) and aiosmtpd (SMTP).

Dovecot is the Debian package (dovecot-imapd, dovecot-lmtpd), started as root in the
foreground with its own config under a temp dir: 127.0.0.1 only, free ports, a passwd-file
user, a certificate from a throw-away CA made with openssl. Mail arrives through its LMTP
listener, as a receiving MTA would deliver it. The SMTP server takes the bot's replies
(STARTTLS required, AUTH required) and keeps them for assertions.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import email
import email.policy
import email.utils
import grp
import os
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from pathlib import Path

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
BOT = "bot@nb.test"
BOT_PASSWORD = "imap-secret-0123456789"
SMTP_USER = "bot-smtp"
SMTP_PASSWORD = "smtp-secret-0123456789"


def dovecot_missing() -> str | None:
    """Why Dovecot cannot run here, or None."""
    if not os.path.exists(DOVECOT):
        return "dovecot is not installed (apt-get install dovecot-imapd dovecot-lmtpd)"
    if os.geteuid() != 0:
        return "Dovecot is started as root by these tests"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_certs(where: Path) -> Path:
    """A CA and a server certificate for localhost / 127.0.0.1; returns the CA file."""

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=where)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=nb test CA",
        "-keyout", "ca.key", "-out", "ca.pem", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
        "-keyout", "key.pem", "-out", "server.csr")  # fmt: skip
    (where / "ext.cnf").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
    )
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-out", "cert.pem", "-extfile", "ext.cnf")  # fmt: skip
    for name in ("ca.pem", "cert.pem"):
        os.chmod(where / name, 0o644)
    return where / "ca.pem"


class Dovecot:
    """A private Dovecot: `imap_port` (STARTTLS), `imaps_port`, `lmtp_port`; user BOT."""

    def __init__(self, idle: bool = True) -> None:
        self.idle = idle
        self.dir = Path(tempfile.mkdtemp(prefix="nbdovecot-", dir="/tmp"))
        os.chmod(self.dir, 0o755)
        self.ca = make_certs(self.dir)
        self.imap_port, self.imaps_port, self.lmtp_port = free_port(), free_port(), free_port()
        self.proc: subprocess.Popen | None = None
        self.log = self.dir / "dovecot.log"
        mail = self.dir / "mail"
        mail.mkdir()
        os.chown(mail, 65534, 65534)
        (self.dir / "users").write_text(f"{BOT}:{{PLAIN}}{BOT_PASSWORD}\n")
        os.chmod(self.dir / "users", 0o640)
        os.chown(self.dir / "users", 0, grp.getgrnam("dovecot").gr_gid)
        (self.dir / "dovecot.conf").write_text(self._config())

    def _config(self) -> str:
        d = self.dir
        caps = (
            "" if self.idle else "imap_capability = IMAP4rev1 LITERAL+ SASL-IR ID ENABLE UIDPLUS\n"
        )
        return (
            caps
            + f"""
base_dir = {d}/run
state_dir = {d}/state
instance_name = nbtest-{d.name}
log_path = {self.log}
protocols = imap lmtp
listen = 127.0.0.1
ssl = yes
ssl_cert = <{d}/cert.pem
ssl_key = <{d}/key.pem
disable_plaintext_auth = yes
auth_mechanisms = plain login
default_login_user = dovenull
default_internal_user = dovecot
mail_location = maildir:~/Maildir
mailbox_idle_check_interval = 1 secs
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/users
}}
userdb {{
  driver = static
  args = uid=65534 gid=65534 home={d}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    port = {self.imaps_port}
    ssl = yes
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    port = {self.lmtp_port}
  }}
}}
protocol lmtp {{
  postmaster_address = postmaster@nb.test
}}
"""
        )

    def start(self) -> Dovecot:
        self.proc = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(self.dir / "dovecot.conf")],
            start_new_session=True,  # its own process group, which stop() ends whole
            stdout=subprocess.DEVNULL,
            stderr=open(self.dir / "stderr", "ab"),  # noqa: SIM115 — lives as long as Dovecot
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dovecot exited: {(self.dir / 'stderr').read_text()}")
            try:
                for port in (self.imaps_port, self.lmtp_port):
                    socket.create_connection(("127.0.0.1", port), 1).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("dovecot did not start listening")

    def stop(self) -> None:
        """Stop Dovecot as systemd would (the whole control group): the master, then any
        login process it left serving an open TLS connection, which would keep a client's
        IDLE alive after the server is gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def deliver(self, *raws: bytes, mail_from: str = "sender@example.com") -> None:
        """Deliver raw messages to BOT through LMTP, as the receiving MTA would."""
        with smtplib.LMTP("127.0.0.1", self.lmtp_port, timeout=30) as lmtp:
            for raw in raws:
                lmtp.sendmail(mail_from, [BOT], raw)

    def read_log(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def flags(self) -> dict[str, str]:
        """Message subject → IMAP flags, read over IMAPS as BOT."""
        import imaplib

        ctx = ssl.create_default_context(cafile=str(self.ca))
        with imaplib.IMAP4_SSL("127.0.0.1", self.imaps_port, ssl_context=ctx) as imap:
            imap.login(BOT, BOT_PASSWORD)
            imap.select("INBOX", readonly=True)
            _, data = imap.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            out = {}
            for item in data:
                if isinstance(item, tuple):
                    subject = email.message_from_bytes(item[1])["Subject"] or ""
                    out[subject.strip()] = item[0].decode()
            return out


class SmtpCapture:
    """aiosmtpd on 127.0.0.1 with STARTTLS and AUTH required; `messages` are what it took,
    `arrivals` (Subject, time.monotonic()) when it took each.

    AUTH (PLAIN, LOGIN) is answered by the handler's documented handle_AUTH hook rather than
    an `authenticator`: on that path aiosmtpd 1.4 itself still sets the deprecated
    Session.login_data and logs "Session.login_data is deprecated" for every login
    (aio-libs/aiosmtpd#347)."""

    def __init__(self, certdir: Path) -> None:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import MISSING

        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(certdir / "cert.pem", certdir / "key.pem")
        self.messages: list[email.message.EmailMessage] = []
        self.arrivals: list[tuple[str, float]] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.logins: list[str] = []
        self._lock = threading.Lock()
        capture = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                now = time.monotonic()
                msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
                with capture._lock:
                    capture.messages.append(msg)
                    capture.arrivals.append((str(msg["Subject"]), now))
                    capture.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
                return "250 OK"

            async def handle_AUTH(self, server, session, envelope, args):
                mechanism = args[0].upper()
                if mechanism == "PLAIN":
                    blob = _b64(args[1]) if len(args) > 1 else await server.challenge_auth("")
                    if blob is MISSING or blob is None:
                        return None if blob is MISSING else "501 5.5.2 Can't decode base64"
                    _, login, password = (blob.split(b"\0") + [b"", b""])[:3]
                elif mechanism == "LOGIN":
                    login = (
                        _b64(args[1]) if len(args) > 1 else await server.challenge_auth("Username:")
                    )
                    if login is MISSING or login is None:
                        return None if login is MISSING else "501 5.5.2 Can't decode base64"
                    password = await server.challenge_auth("Password:")
                    if password is MISSING:
                        return None
                else:
                    return "504 5.5.4 Unrecognized authentication type"
                if login != SMTP_USER.encode() or password != SMTP_PASSWORD.encode():
                    return "535 5.7.8 Authentication credentials invalid"
                session.authenticated = True
                session.auth_data = login
                capture.logins.append(mechanism)
                return "235 2.7.0 Authentication successful"

        self.port = free_port()
        self.controller = Controller(
            Handler(),
            hostname="127.0.0.1",
            port=self.port,
            tls_context=ctx,
            require_starttls=True,
            auth_required=True,
            auth_require_tls=True,
        )

    def start(self) -> SmtpCapture:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def received(self) -> list[email.message.EmailMessage]:
        with self._lock:
            return list(self.messages)

    def arrived(self) -> list[tuple[str, float]]:
        """(Subject, monotonic time) of each message taken, in order."""
        with self._lock:
            return list(self.arrivals)


def _b64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        return None


def mail(
    subject: str,
    body: str = "hello bot",
    *,
    sender: str = "alice@example.com",
    authres: str | None = "mx.nb.test; dkim=pass header.d=example.com; spf=pass "
    "smtp.mailfrom=alice@example.com",
    headers: dict[str, str] | None = None,
    message_id: str | None = None,
    raw_body: bytes | None = None,
) -> bytes:
    """A raw message as the receiving server hands it on (its Authentication-Results on top)."""
    lines = []
    if authres is not None:
        lines.append(f"Authentication-Results: {authres}")
    lines += [
        f"From: {sender}",
        f"To: {BOT}",
        f"Subject: {subject}",
        "Date: Mon, 01 Jan 2024 10:00:00 +0000",
        f"Message-ID: {message_id or email.utils.make_msgid(domain='example.com')}",
    ]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    head = "\r\n".join(lines).encode()
    if raw_body is not None:
        return head + b"\r\n" + raw_body
    return head + b"\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + body.encode() + b"\r\n"
