"""E-mail latency: from a mail's delivery to its reply reaching the SMTP server.

A real Dovecot (mail delivered by LMTP, IMAP IDLE on and off) and a real SMTP server (aiosmtpd),
the real gateway process and a local model answering at once. Prints the median and the worst
of RUNS mails for IDLE and for polling (pollIntervalSeconds = 5), next to the floor: LMTP
delivery + one IMAP fetch + one SMTP send done directly by this script; and the gateway's CPU
time per mail (idle waiting included, so polling's wake-ups count).
Budget (DESIGN.md): a reply within seconds of delivery with IMAP IDLE. Needs root (Dovecot).
"""

from __future__ import annotations

import imaplib
import os
import smtplib
import ssl
import statistics
import sys
import time

from _common import REPO, proc_cpu  # also puts tests/ on sys.path

# isort: split
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
from harness import GatewayProcess, NanobotHome

RUNS = int(os.environ.get("BENCH_RUNS", "10"))


def config(llm, dovecot, smtp, idle: bool) -> dict:
    return {
        "providers": {"openai": {"apiKey": "sk-bench-000000000000", "apiBase": llm.url}},
        "agents": {"defaults": {"model": "gpt-bench"}},
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
                "allowFrom": ["alice@example.com"],
                "trustedAuthservIds": ["mx.nb.test"],
                "pollIntervalSeconds": 5,
            }
        },
        "security": {"rateLimit": {"messagesPerMinute": 100000, "burst": 1000}},
        "gateway": {"port": 0},
    }


def wait(cond, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    raise TimeoutError("no reply in time")


def floor(dovecot: Dovecot, smtp: SmtpCapture) -> float:
    """Deliver, fetch it over IMAPS, send one mail over SMTP: what any reply must cost."""
    ctx = ssl.create_default_context(cafile=str(dovecot.ca))
    start = time.monotonic()
    dovecot.deliver(mail("floor"))
    imap = imaplib.IMAP4_SSL("127.0.0.1", dovecot.imaps_port, ssl_context=ctx)
    imap.login(BOT, BOT_PASSWORD)
    imap.select("INBOX")
    _, data = imap.uid("SEARCH", None, "ALL")
    imap.uid("FETCH", data[0].split()[-1], "(BODY.PEEK[])")
    imap.logout()
    with smtplib.SMTP("127.0.0.1", smtp.port, timeout=10) as s:
        s.starttls(context=ctx)
        s.login(SMTP_USER, SMTP_PASSWORD)
        s.sendmail(BOT, ["alice@example.com"], b"Subject: floor\r\n\r\nfloor\r\n")
    return time.monotonic() - start


def run(idle: bool) -> tuple[list[float], float, float]:
    home = NanobotHome()
    dovecot = Dovecot(idle=idle).start()
    smtp = SmtpCapture(dovecot.dir).start()
    try:
        with ScriptedLLMServer("openai") as llm:
            llm.respond_with(lambda body: reply(f"echo: {last_user_text(body)}"))
            home.write_config(config(llm, dovecot, smtp, idle))
            gw = GatewayProcess(home, env={"SSL_CERT_FILE": str(dovecot.ca)}).wait_ready()
            try:
                wait(lambda: "e-mail: connected to" in gw.output(), 20)
                time.sleep(1)  # start-up work done before CPU is counted
                cpu0 = proc_cpu(gw.proc.pid)
                times = []
                for i in range(RUNS):
                    subject = f"bench {i}"
                    start = time.monotonic()
                    dovecot.deliver(mail(subject))
                    want = f"Re: {subject}"
                    try:
                        wait(lambda w=want: any(m["Subject"] == w for m in smtp.received()), 30)
                    except TimeoutError:
                        print(gw.output()[-3000:], file=sys.stderr)
                        raise
                    times.append(time.monotonic() - start)
                cpu_ms = (proc_cpu(gw.proc.pid) - cpu0) * 1000 / RUNS
                base = statistics.median(floor(dovecot, smtp) for _ in range(3))
                return times, base, cpu_ms
            finally:
                gw.stop()
    finally:
        smtp.stop()
        dovecot.cleanup()
        home.cleanup()


def main() -> int:
    missing = dovecot_missing()
    if missing:
        print(f"bench/mail_latency.py needs Dovecot and root: {missing}", file=sys.stderr)
        return 1
    print(f"e-mail: delivery → reply at the SMTP server, {RUNS} mails each ({REPO.name})")
    for idle in (True, False):
        times, base, cpu_ms = run(idle)
        label = "IMAP IDLE" if idle else "polling every 5 s"
        print(
            f"  {label:18s} median {statistics.median(times):.3f} s  worst {max(times):.3f} s"
            f"   (floor: deliver + fetch + send {base:.3f} s)   gateway CPU {cpu_ms:.1f} ms/mail"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
