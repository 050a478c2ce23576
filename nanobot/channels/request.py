"""Request/response channels: the local HTTP API and the terminal. A caller asks and awaits the
reply; the message still takes the one route (admission, durable inbox, dispatcher)."""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any, ClassVar

from nanobot.channels.base import BaseChannel
from nanobot.route.admission import Verdict
from nanobot.route.message import OutboundMessage
from nanobot.route.route import Route

log = logging.getLogger("nanobot.channels")


class Refused(Exception):
    """The route did not take the message (rate limited …); `verdict` says why."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.reason)
        self.verdict = verdict


class RequestChannel(BaseChannel):
    """ask() submits a message and awaits the reply that the dispatcher sends back.

    Senders are authenticated by the caller (the API token, the OS account at the terminal),
    so allowFrom does not apply; the rate limit, the audit event and the inbox do.
    """

    name: ClassVar[str] = "request"

    def __init__(self, config: Any, route: Route) -> None:
        super().__init__(config, route)
        self._waiting: dict[str, asyncio.Future[str]] = {}
        self._set_status("running")

    def allow_list(self) -> list[str] | None:
        return None

    async def start(self) -> None:
        self._set_status("running")
        await asyncio.Event().wait()  # nothing to poll: messages come through ask()

    async def ask(self, sender_id: str, chat_id: str, text: str, media: list[str] | None = None):
        """Run one turn for chat_id and return its reply; raises Refused when not admitted."""
        request_id = secrets.token_hex(8)
        meta = {"message_id": request_id, "dedupe_key": f"{self.name}-{request_id}"}
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = fut
        try:
            verdict = await self.handle_inbound(sender_id, chat_id, text, media, meta)
            if not verdict:
                raise Refused(verdict)
            return await fut
        finally:
            self._waiting.pop(request_id, None)

    async def send(self, msg: OutboundMessage) -> None:
        fut = self._waiting.get(msg.reply_to or "")
        if fut is None:
            # A reply to a request whose caller has gone (timeout, a restart in between).
            log.info("%s: no caller waits for a reply in %s; dropped", self.name, msg.chat_id)
            return
        if not fut.done():
            fut.set_result(msg.content)


class LocalAPIChannel(RequestChannel):
    """The local HTTP API's turns: chat `user`, session http:<user>."""

    name = "http"


class TerminalChannel(RequestChannel):
    """`nanobot agent`: chat = the session name, session cli:<name>. Messages that answer no
    request (a tool's message, a stored reply from an interrupted run) are printed."""

    name = "cli"

    async def send(self, msg: OutboundMessage) -> None:
        if msg.reply_to in self._waiting:
            await super().send(msg)
        else:
            print(f"\nnanobot: {msg.content}\n", flush=True)
