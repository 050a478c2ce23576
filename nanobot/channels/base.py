"""Channel base class and the one access-control path: allowFrom → rate limit → audit → bus."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from nanobot.bus import InboundMessage, MessageBus, OutboundMessage
from nanobot.security.access import is_allowed
from nanobot.security.audit import get_audit
from nanobot.security.redact import redact

log = logging.getLogger("nanobot.channels")

RATE_NOTICE = "You're sending messages too fast; please wait a minute."
_STATUS_MAX = 120

# Called only after the sender passed every check; returns the final (content, media paths).
Prepare = Callable[[], Awaitable[tuple[str, list[str]]]]


class SendError(Exception):
    """A reply could not be delivered after the channel's own retries; the text holds no secret."""


def printable(value: str) -> str:
    """A user-supplied value made safe for one log line (control characters become '?')."""
    return "".join(c if c.isprintable() else "?" for c in value)


class BaseChannel:
    """A chat channel. Subclasses implement start/stop/send; every inbound message goes through
    handle_inbound, so allowFrom, rate limits and auditing cannot be skipped by a channel.

    start() runs until stop() is called; raising from it tells the gateway's supervisor to
    restart the channel with backoff. status is a short string for /healthz.
    """

    name: ClassVar[str] = "base"

    def __init__(self, config: Any, bus: MessageBus, *, limiter: Any = None) -> None:
        self.config = config
        self.bus = bus
        self.limiter = limiter
        self._status = "stopped"

    @property
    def status(self) -> str:
        """ "starting", "running", "error: <short reason>" or "stopped"."""
        return self._status

    def _set_status(self, status: str) -> None:
        self._status = redact(status)[:_STATUS_MAX]

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        self._set_status("stopped")

    async def send(self, msg: OutboundMessage) -> None:
        """Deliver msg; raise SendError when it cannot be delivered after retries."""
        raise NotImplementedError

    def command_reply(self, content: str) -> str | None:
        """The channel's own answer to a command such as /start, or None to pass it on."""
        return None

    async def handle_inbound(
        self,
        sender_id: str,
        chat_id: str,
        content: str,
        media: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        *,
        prepare: Prepare | None = None,
    ) -> bool:
        """Admit one message: True when the sender passed the checks (and the message was
        published or answered by the channel), False when it was denied or rate limited.

        Denied senders get nothing back. `prepare` (media download, transcription) runs only for
        admitted senders, so strangers cannot make the channel fetch files or spend API credit.
        The message is on the bus durably (publish_inbound) when this returns True.
        """
        channel = self.name
        if not is_allowed(channel, sender_id, list(self.config.allow_from)):
            log.warning("Access denied for sender %s on channel %s", printable(sender_id), channel)
            self._audit_access(sender_id, "denied", "not in allowFrom")
            return False
        if self.limiter is not None:
            decision = self.limiter.check(f"{channel}:{sender_id}")
            if not decision.allowed:
                log.warning(
                    "Rate limit exceeded for sender %s on channel %s (retry after %.0f s)",
                    printable(sender_id),
                    channel,
                    decision.retry_after or 0,
                )
                get_audit().record("rate_limit", channel=channel, sender=sender_id, kind="message")
                if decision.notify:
                    await self._notify(chat_id, RATE_NOTICE)
                return False
        open_channel = not self.config.allow_from
        self._audit_access(sender_id, "allowed", "allowFrom empty" if open_channel else "allowFrom")
        reply = self.command_reply(content)
        if reply is not None:
            await self._notify(chat_id, reply)
            return True
        if prepare is not None:
            content, media = await prepare()
        msg = InboundMessage(
            channel=channel,
            sender_id=sender_id,
            chat_id=chat_id,
            content=content,
            media=list(media or []),
            metadata=dict(metadata or {}),
        )
        await self.bus.publish_inbound(msg)
        return True

    def _audit_access(self, sender_id: str, decision: str, reason: str) -> None:
        get_audit().record(
            "access", channel=self.name, sender=sender_id, decision=decision, reason=reason
        )

    async def _notify(self, chat_id: str, text: str) -> None:
        """Best-effort short answer from the channel itself (a failure is logged, not raised)."""
        try:
            await self.send(OutboundMessage(channel=self.name, chat_id=chat_id, content=text))
        except SendError as e:
            log.warning("Could not send a notice on channel %s: %s", self.name, e)
