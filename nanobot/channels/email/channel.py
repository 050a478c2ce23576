"""The e-mail channel: one IMAP connection in (IDLE, else polling), SMTP replies out.

Per message, in this order: fetch with BODY.PEEK[] → parse → never answer loops (our own
mail, auto-replies, bounces, list mail) → allowFrom → sender authentication (authres.py) →
handle_inbound (rate limit, audit, durable inbox). Only once the route holds the message is
its UID recorded as handled (state.py); \\Seen is set once its reply went out (or at once for
mail that gets no reply). So after a crash at any instant a message is either fetched again and
found a duplicate by the route (dedupe key per account, UIDVALIDITY and UID), or already
handled; and a stored reply sent again is not mailed twice (the sent log).
"""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import logging
import os
import time

from nanobot import paths
from nanobot.backoff import Backoff
from nanobot.channels.base import BaseChannel, SendError, printable
from nanobot.channels.email import authres, smtp
from nanobot.channels.email.imap import ImapClient, ImapError
from nanobot.channels.email.loops import loop_reason
from nanobot.channels.email.media import save_attachments
from nanobot.channels.email.parse import Mail, parse_mail
from nanobot.channels.email.settings import check_config, own_addresses
from nanobot.channels.email.state import MailboxState, SentLog, account_slug
from nanobot.route.message import OutboundMessage
from nanobot.security.access import is_allowed
from nanobot.security.audit import get_audit
from nanobot.workers import run_detached, run_pooled

log = logging.getLogger("nanobot.channels.email")

IDLE_RENEW = 300.0  # seconds; RFC 2177 wants IDLE re-issued before 29 minutes
SEND_ATTEMPTS = 3
_BACKOFF = Backoff(1.0, 60.0)


class EmailChannel(BaseChannel):
    name = "email"
    sends_files = True  # attached to the mail

    def __init__(self, config, route) -> None:
        super().__init__(config, route)
        check_config(config)
        c = config
        self._slug = account_slug(c.imap_username, c.imap_host, c.imap_port, c.imap_mailbox)
        self._root = paths.state_dir() / "email"
        self._own = own_addresses(c)
        self._state: MailboxState | None = None
        self._sent: SentLog | None = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._kick = asyncio.Event()
        self._stopping = False
        self._stopped = asyncio.Event()
        self._to_mark: list[tuple[int, int]] = []  # (uidvalidity, uid) answered, wanting \Seen
        self._retry_at = 0.0  # monotonic time a rate-limited message is tried again
        self.mode = "disconnected"
        self.last_mail = ""
        self.last_error = ""
        self._state_connected = False

    # -- state -------------------------------------------------------------------------------

    def _stores(self) -> tuple[MailboxState, SentLog]:
        if self._state is None or self._sent is None:
            self._state = MailboxState(self._root, self._slug)
            self._sent = SentLog(self._root, self._slug)
        return self._state, self._sent

    def _show(self) -> None:
        parts = [self.mode]
        if self.last_mail:
            parts.append(f"last mail {self.last_mail}")
        if self.last_error:
            parts.append(f"last error: {self.last_error}")
        prefix = "running" if self.mode in ("IDLE", "polling") else "error"
        self._set_status(f"{prefix}: " + "; ".join(parts))

    def _wake(self) -> None:
        self._kick.set()
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"!")

    # -- intake ------------------------------------------------------------------------------

    async def start(self) -> None:
        self._stopping = False
        self._stopped.clear()
        try:
            if not self.config.consent_granted:
                log.warning(
                    "e-mail channel: channels.email.consentGranted is not true, so the "
                    "mailbox is left untouched; set it to true to let nanobot read and answer mail"
                )
                self._set_status("off: channels.email.consentGranted is not true")
                while not self._stopping:
                    self._kick.clear()
                    await self._kick.wait()
                return
            await asyncio.to_thread(self._stores)
            failures = 0
            while not self._stopping:
                client = ImapClient(self.config)
                try:
                    await self._session(client)
                except (ImapError, imaplib.IMAP4.error, OSError, EOFError) as e:
                    self.mode = "disconnected"
                    self.last_error = printable(str(e))[:200]
                    self._show()
                    if self._stopping:
                        break
                    failures = 0 if self._state_connected else failures + 1
                    delay = _BACKOFF.delay(failures)
                    log.warning("e-mail: %s; reconnecting in %.0f s", self.last_error, delay)
                    self._kick.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._kick.wait(), delay)
                finally:
                    await run_detached(client.close)
        finally:
            self._set_status("stopped")
            self._stopped.set()

    async def stop(self) -> None:
        self._stopping = True
        self._wake()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopped.wait(), 4)
        self._set_status("stopped")

    async def _session(self, client: ImapClient) -> None:
        c = self.config
        state, _ = self._stores()
        self._state_connected = False
        await run_detached(client.connect)
        validity, uidnext = await run_detached(client.select, c.imap_mailbox)
        if await asyncio.to_thread(state.open, validity, uidnext):
            log.info(
                "e-mail: first look at %s (UIDVALIDITY %d): mail already there is left "
                "alone; mail from now on is answered",
                c.imap_mailbox,
                validity,
            )
        self._state_connected = True
        self.mode = "IDLE" if client.idle_supported else "polling"
        log.info(
            "e-mail: connected to %s as %s, mailbox %s (%s)",
            c.imap_host,
            c.imap_username,
            c.imap_mailbox,
            self.mode if client.idle_supported else f"polling every {c.poll_interval_seconds} s",
        )
        self._show()
        while not self._stopping:
            await self._flush_seen(client)
            await self._check(client)
            if self._stopping:
                return
            if client.changes_pending():  # reported during the check: it may have missed it
                continue
            wait = IDLE_RENEW if client.idle_supported else float(c.poll_interval_seconds)
            if self._retry_at:
                wait = max(0.5, min(wait, self._retry_at - time.monotonic()))
            self._kick.clear()
            if client.idle_supported:
                await run_detached(client.idle, wait, self._wake_r)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._kick.wait(), wait)

    async def _flush_seen(self, client: ImapClient) -> None:
        state, sent = self._stores()
        queued, self._to_mark = self._to_mark, []
        uids = {u for v, u in queued if v == state.uidvalidity}
        uids |= {u for u, key in state.unseen.items() if sent.answered(key)}
        if not uids:
            return
        if self.config.mark_seen:
            await run_detached(client.mark_seen, sorted(uids))
        await asyncio.to_thread(state.seen, sorted(uids))

    async def _check(self, client: ImapClient) -> None:
        state, _ = self._stores()
        uids = await run_detached(client.uids_after, state.watermark)
        self._retry_at = 0.0
        for uid in uids:
            if self._stopping:
                return
            if state.is_handled(uid):
                continue
            raw = await run_detached(client.fetch, uid)
            if raw is not None:
                await self._take(client, state.uidvalidity, uid, raw)
        await asyncio.to_thread(state.advance, uids)

    async def _finish(self, client: ImapClient, uid: int, *, seen_now: bool, key=None) -> None:
        state, _ = self._stores()
        wants_seen = self.config.mark_seen
        await asyncio.to_thread(state.done, uid, seen_key=key if wants_seen and key else None)
        if seen_now and wants_seen:
            await run_detached(client.mark_seen, [uid])

    async def _take(self, client: ImapClient, validity: int, uid: int, raw: bytes) -> None:
        _, sent = self._stores()
        mail = await asyncio.to_thread(parse_mail, raw, self.config.max_body_chars)
        self.last_mail = time.strftime("%Y-%m-%d %H:%M:%S")
        self._show()
        who = printable(mail.sender or mail.header("From"))[:120]
        reason = loop_reason(mail, self._own, sent.ids)
        if reason:
            log.info("e-mail UID %d from %s is not answered: %s", uid, who, reason)
            await self._finish(client, uid, seen_now=True)
            return
        allowed = is_allowed(self.name, mail.sender, self.allow_list())
        auth = self._authenticate(mail)
        if allowed and not auth.ok:
            log.warning(
                "Access denied for sender %s on channel email: not authenticated (%s)",
                who,
                auth.why,
            )
            get_audit().record(
                "access",
                channel=self.name,
                sender=mail.sender,
                decision="denied",
                reason=f"sender not authenticated: {auth.why}",
            )
            await self._finish(client, uid, seen_now=True)
            return
        key = f"email-{self._slug}-{validity}-{uid}"
        metadata = {
            "message_id": mail.message_id or key,
            "subject": mail.subject,
            "references": mail.references,
            "uid": uid,
            "uidvalidity": validity,
            "email_key": key,
            "dedupe_key": key,
        }
        content = _content(mail)

        async def prepare() -> tuple[str, list[str]]:
            lines, saved = await asyncio.to_thread(save_attachments, mail.attachments, self.config)
            return content + "\n\nAttachments:\n" + "\n".join(lines), saved

        verdict = await self.handle_inbound(
            mail.sender,
            mail.sender,
            content,
            [],
            metadata,
            prepare=prepare if mail.attachments else None,
        )
        if verdict:
            await self._finish(client, uid, seen_now=False, key=key)
        elif verdict.reason == "duplicate":
            answered = sent.answered(key)
            await self._finish(client, uid, seen_now=answered, key=None if answered else key)
        elif verdict.reason == "rate_limited":
            retry = time.monotonic() + (verdict.retry_after or 5.0)
            self._retry_at = min(self._retry_at or retry, retry)
        else:
            await self._finish(client, uid, seen_now=True)

    def _authenticate(self, mail: Mail) -> authres.Verdict:
        c = self.config
        if not (c.verify_dkim or c.verify_spf):
            return authres.Verdict(True, "sender authentication is off")
        return authres.check(
            mail.headers("Authentication-Results"),
            mail.sender.rpartition("@")[2],
            c.trusted_authserv_ids,
            dkim=c.verify_dkim,
            spf=c.verify_spf,
        )

    # -- replies -----------------------------------------------------------------------------

    async def send(self, msg: OutboundMessage) -> None:
        """Mail msg to its chat (an address allowFrom admits); a final reply to inbound mail
        that was already answered (a resend after a restart, or the message tool wrote in the
        same turn) is not mailed again."""
        c = self.config
        if not c.consent_granted:
            raise SendError("channels.email.consentGranted is not true; nothing is mailed")
        to = msg.chat_id
        if not is_allowed(self.name, to, self.allow_list()):
            raise SendError(
                f"{printable(to)[:80]} is not in channels.email.allowFrom; the e-mail channel "
                "writes only to addresses allowed to write to it"
            )
        _, sent = await asyncio.to_thread(self._stores)
        meta = msg.metadata or {}
        key = meta.get("email_key")
        if key and msg.reply_to is not None and sent.answered(key):
            log.info("e-mail to %s: this message was already answered; not mailed again", to)
            self._answered(meta)
            return
        if not c.auto_reply_enabled:
            log.info("e-mail to %s not sent: autoReplyEnabled is false (reply recorded)", to)
            await asyncio.to_thread(sent.record, key, None)
            self._answered(meta)
            return
        mail = smtp.build_message(
            c.from_address, to, msg.content, meta, c.subject_prefix, msg.media
        )
        await self._deliver(mail, lambda: sent.record(key, str(mail["Message-ID"])))
        self._answered(meta)

    async def _deliver(self, mail, on_accepted) -> None:
        for attempt in range(SEND_ATTEMPTS):
            try:
                await run_pooled(smtp.send_message, self.config, mail, on_accepted)
                return
            except smtp.SmtpError as e:
                self.last_error = str(e)[:200]
                if e.permanent or attempt == SEND_ATTEMPTS - 1:
                    raise SendError(f"could not send the e-mail: {e}") from e
                delay = _BACKOFF.delay(attempt)
                log.warning("e-mail: %s; trying again in %.0f s", e, delay)
                await asyncio.sleep(delay)

    def _answered(self, meta: dict) -> None:
        uid, validity = meta.get("uid"), meta.get("uidvalidity")
        if isinstance(uid, int) and isinstance(validity, int):
            self._to_mark.append((validity, uid))
            self._wake()


def _content(mail: Mail) -> str:
    head = [f"E-mail from {mail.sender}"]
    if mail.subject:
        head.append(f"Subject: {mail.subject}")
    if mail.date:
        head.append(f"Date: {mail.date}")
    return "\n".join(head) + "\n\n" + (mail.body or "(no text)")
