#!/usr/bin/env python3
"""A real mail host inside the deployment test's container: Dovecot (Debian's package; IMAPS on
127.0.0.1:993, LMTP on :24 for delivery) and aiosmtpd (Debian's python3-aiosmtpd; submission on
:587, STARTTLS and AUTH required), driven by the project's own tests/mailservers.py (copied next
to this file), plus a control port for the tests.

    mail_host.py --control-port 18796 --imap-password-hex HEX --smtp-password-hex HEX

The certificates come from a throw-away CA that is added to the system trust store
(/usr/local/share/ca-certificates + update-ca-certificates), as an administrator with a private
CA would do: nanobot verifies certificates and must trust this one. Passwords arrive
hex-encoded and Dovecot's passwd-file holds only a SHA-256 of the IMAP one, so no plaintext
copy of a test password lands on disk (the deployment test searches the filesystem for them).
Control side, on 127.0.0.1:
  POST /deliver {"subject", "sender", "body", "authenticated": true} -> {"message_id"}
      delivered through LMTP with the Authentication-Results header of the receiving server
      mx.nb.test (DKIM and SPF pass for the sender's domain) unless authenticated is false
  GET  /sent    -> what the SMTP side took: [{"subject", "from", "to", "in_reply_to",
                   "auto_submitted", "body"}]
  GET  /flags   -> {subject: IMAP flags} of the mailbox
Dovecot 2.3 (Debian 12) is configured by mailservers.Dovecot; Dovecot 2.4 (Debian 13) changed
the configuration language, so its file is written here.
"""

from __future__ import annotations

import argparse
import email.policy
import email.utils
import hashlib
import shutil
import subprocess
from http.server import ThreadingHTTPServer
from pathlib import Path

import mailservers
from control import JSONControl
from mailservers import BOT, Dovecot, SmtpCapture

IMAP_PORT, IMAPS_PORT, LMTP_PORT, SMTP_PORT = 143, 993, 24, 587
AUTHSERV_ID = "mx.nb.test"
CA_DEST = Path("/usr/local/share/ca-certificates/nanobot-deploy-test-mail.crt")


def dovecot_24() -> bool:
    out = subprocess.run([mailservers.DOVECOT, "--version"], capture_output=True, text=True)
    return out.stdout.strip().startswith("2.4")


class MailHost(Dovecot):
    """mailservers.Dovecot on the standard ports, with a hashed password and either syntax."""

    def __init__(self, imap_password: str) -> None:
        super().__init__(idle=True)
        self.imap_port, self.imaps_port, self.lmtp_port = IMAP_PORT, IMAPS_PORT, LMTP_PORT
        digest = hashlib.sha256(imap_password.encode()).hexdigest()
        (self.dir / "users").write_text(f"{BOT}:{{SHA256.HEX}}{digest}\n")
        config = self._config_24() if dovecot_24() else self._config()
        (self.dir / "dovecot.conf").write_text(config)

    def _config_24(self) -> str:
        d = self.dir
        return f"""
dovecot_config_version = 2.4.0
dovecot_storage_version = 2.4.0
base_dir = {d}/run
state_dir = {d}/state
instance_name = nbtest-{d.name}
log_path = {self.log}
protocols = imap lmtp
listen = 127.0.0.1
ssl = yes
ssl_server_cert_file = {d}/cert.pem
ssl_server_key_file = {d}/key.pem
auth_allow_cleartext = no
auth_mechanisms = plain login
default_login_user = dovenull
default_internal_user = dovecot
mail_driver = maildir
mail_path = ~/Maildir
mailbox_idle_check_interval = 1s
passdb passwd-file {{
  passwd_file_path = {d}/users
}}
userdb static {{
  fields {{
    uid = 65534
    gid = 65534
    home = {d}/mail/%{{user}}
  }}
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


def trust_ca(ca: Path) -> None:
    shutil.copy(ca, CA_DEST)
    CA_DEST.chmod(0o644)
    subprocess.run(["update-ca-certificates"], check=True, capture_output=True)


def _summary(msg) -> dict:
    part = msg.get_body(("plain",)) if msg.is_multipart() else msg
    return {
        "subject": str(msg["Subject"] or ""),
        "from": str(msg["From"] or ""),
        "to": str(msg["To"] or ""),
        "in_reply_to": str(msg["In-Reply-To"] or ""),
        "auto_submitted": str(msg["Auto-Submitted"] or ""),
        "body": part.get_content() if part is not None else "",
    }


def control_handler(dovecot: MailHost, smtp: SmtpCapture) -> type[JSONControl]:
    class Control(JSONControl):
        def do_POST(self) -> None:
            if self.path != "/deliver":
                return self.reply(404, {"error": "POST /deliver only"})
            try:
                req = self.body()
                sender = req["sender"]
                domain = sender.rpartition("@")[2]
                authres = (
                    f"{AUTHSERV_ID}; dkim=pass header.d={domain}; spf=pass smtp.mailfrom={sender}"
                    if req.get("authenticated", True)
                    else None
                )
                msgid = email.utils.make_msgid(domain=domain)
                raw = mailservers.mail(
                    req["subject"], req.get("body", "hello bot"), sender=sender,
                    authres=authres, message_id=msgid,
                )  # fmt: skip
                dovecot.deliver(raw, mail_from=sender)
            except (ValueError, KeyError, TypeError, OSError) as e:
                return self.reply(400, {"error": f"{type(e).__name__}: {e}"})
            self.reply(200, {"message_id": msgid})

        def do_GET(self) -> None:
            if self.path == "/sent":
                return self.reply(200, [_summary(m) for m in smtp.received()])
            if self.path == "/flags":
                return self.reply(200, dovecot.flags())
            self.reply(404, {"error": "GET /sent or /flags"})

    return Control


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--control-port", type=int, required=True)
    ap.add_argument("--imap-password-hex", required=True)
    ap.add_argument("--smtp-password-hex", required=True)
    args = ap.parse_args()
    imap_password = bytes.fromhex(args.imap_password_hex).decode()
    # SmtpCapture compares the login with these module globals at each AUTH; Dovecot.flags()
    # logs in with BOT_PASSWORD.
    mailservers.SMTP_PASSWORD = bytes.fromhex(args.smtp_password_hex).decode()
    mailservers.BOT_PASSWORD = imap_password
    dovecot = MailHost(imap_password).start()
    trust_ca(dovecot.ca)
    smtp = SmtpCapture(dovecot.dir)
    smtp.port = smtp.controller.port = SMTP_PORT
    smtp.start()
    control = ThreadingHTTPServer(("127.0.0.1", args.control_port), control_handler(dovecot, smtp))
    control.daemon_threads = True
    print(
        f"mail host: Dovecot {IMAPS_PORT} (IMAPS) / {LMTP_PORT} (LMTP), SMTP {SMTP_PORT}, "
        f"control {args.control_port}",
        flush=True,
    )
    try:
        control.serve_forever()
    finally:
        smtp.stop()
        dovecot.cleanup()


if __name__ == "__main__":
    main()
