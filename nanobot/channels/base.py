"""The channel seam: the Channel protocol, and BaseChannel with the one way a message gets in."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Protocol

from nanobot import paths
from nanobot.agent.progress import TurnProgress
from nanobot.route.admission import Verdict, printable
from nanobot.route.message import InboundMessage, OutboundMessage
from nanobot.route.route import Route
from nanobot.security.redact import redact

log = logging.getLogger("nanobot.channels")

__all__ = ["BaseChannel", "Channel", "SendError", "printable"]

RATE_NOTICE = "You're sending messages too fast; please wait a minute."
DISK_FULL_NOTICE = (
    "Sorry, the server is out of disk space and cannot take your message right now. "
    "Please send it again later."
)
_STATUS_MAX = 120
_DISK_NOTICE_EVERY = 600.0  # seconds between disk-full notices to one chat

# Called only after the sender passed every check; returns the final (content, media paths).
Prepare = Callable[[], Awaitable[tuple[str, list[str]]]]


class SendError(Exception):
    """A reply could not be delivered after the channel's own retries; the text holds no secret."""


class Channel(Protocol):
    """What the gateway needs from a channel."""

    name: str

    @property
    def status(self) -> str: ...
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def send(self, msg: OutboundMessage) -> None: ...
    def turn_started(self, msg: InboundMessage) -> None: ...
    def turn_finished(self, msg: InboundMessage) -> None: ...


class BaseChannel:
    """A chat channel. Subclasses implement start/stop/send; every inbound message goes through
    handle_inbound, so allowFrom, rate limits, auditing and the durable inbox cannot be skipped.

    start() runs until stop() is called; raising from it tells the gateway's supervisor to
    restart the channel with backoff. status is a short string for /healthz.
    """

    name: ClassVar[str] = "base"
    sends_files: ClassVar[bool] = False  # send() delivers OutboundMessage.media too
    approvals: Any = None  # security.approval.Approvals once attached (tools.approval on)

    def __init__(self, config: Any, route: Route) -> None:
        self.config = config
        self.route = route
        self._status = "stopped"
        self._disk_notices: dict[str, float] = {}

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

    def turn_started(self, msg: InboundMessage) -> None:
        """A turn for msg began (show "typing…", presence …); the default does nothing."""

    def turn_finished(self, msg: InboundMessage) -> None:
        """The turn for msg ended, before its reply is sent."""

    def progress(self, msg: InboundMessage) -> TurnProgress | None:
        """A live view of msg's turn (the answer as it is written, tool steps), or None for
        none; the default shows nothing."""
        return None

    def allow_list(self) -> list[str] | None:
        """The senders allowed in (empty = everyone); None when the channel authenticates
        senders itself, as the local API does with its token."""
        return list(self.config.allow_from)

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
    ) -> Verdict:
        """Admit one message; the verdict is truthy when it was accepted (or answered by the
        channel itself), falsy when denied, rate limited or a duplicate.

        Denied senders get nothing back. `prepare` (media download, transcription) runs only for
        admitted senders, so strangers cannot make the channel fetch files or spend API credit.
        When this returns an admitted verdict the message is on disk: advance the cursor.
        Raises OSError when the message could not be stored (after telling the sender).
        """
        verdict = self.route.admission.check(self.name, sender_id, self.allow_list())
        if not verdict:
            if verdict.notify:
                await self._notify(chat_id, RATE_NOTICE)
            return verdict
        if self.approvals is not None and await self._approval_answer(sender_id, chat_id, content):
            return verdict  # an answer to a waiting request, not a new turn
        reply = self.command_reply(content)
        if reply is not None:
            await self._notify(chat_id, reply)
            return verdict
        if prepare is not None:
            content, media = await prepare()
        msg = InboundMessage(
            channel=self.name,
            sender_id=sender_id,
            chat_id=chat_id,
            content=content,
            media=list(media or []),
            metadata=dict(metadata or {}),
        )
        try:
            return await self.route.accept(msg)
        except OSError as e:
            await self._cannot_store(chat_id, e)
            raise

    async def _approval_answer(self, sender_id: str, chat_id: str, content: str) -> bool:
        """Handle "/approve CODE" or "/deny CODE" from an admitted sender (True when it was one)."""
        from nanobot.security.approval import parse_answer

        parsed = parse_answer(content)
        if parsed is None:
            return False
        scope, code = parsed
        if not code:
            await self._notify(chat_id, "Say which request: /approve CODE or /deny CODE.")
            return True
        _, text = self.approvals.answer(self.name, chat_id, sender_id, code, scope)
        await self._notify(chat_id, text)
        return True

    async def _cannot_store(self, chat_id: str, err: OSError) -> None:
        state = paths.state_dir()
        free = paths.free_bytes(state)
        log.error(
            "could not store a message from %s:%s (%s: %s; %d bytes free under %s); it was not "
            "taken, and the channel will offer it again",
            self.name,
            printable(chat_id),
            err.strerror or err,
            err.filename or state,
            free,
            state,
        )
        now = time.monotonic()
        if now - self._disk_notices.get(chat_id, -_DISK_NOTICE_EVERY) >= _DISK_NOTICE_EVERY:
            self._disk_notices[chat_id] = now
            await self._notify(chat_id, DISK_FULL_NOTICE)

    async def _notify(self, chat_id: str, text: str) -> None:
        """Best-effort short answer from the channel itself (a failure is logged, not raised)."""
        try:
            await self.send(OutboundMessage(channel=self.name, chat_id=chat_id, content=text))
        except SendError as e:
            log.warning("Could not send a notice on channel %s: %s", self.name, e)
