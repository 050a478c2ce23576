"""Request/response channels: the local HTTP API and the terminal. A caller asks and awaits the
reply; the message still takes the one route (admission, durable inbox, dispatcher)."""

from __future__ import annotations

import asyncio
import logging
import secrets
import sys
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from nanobot.agent.progress import TurnProgress
from nanobot.channels.base import BaseChannel
from nanobot.route.admission import Verdict
from nanobot.route.message import InboundMessage, OutboundMessage
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

    A caller may pass a TurnProgress to see the answer as it is written. Cancelling ask()
    (Ctrl-C, a client that hung up, a timeout) cancels the turn too: it stops at once, stores
    nothing, and its reply is dropped.
    """

    name: ClassVar[str] = "request"
    answers_approvals: ClassVar[bool] = False  # a caller awaits one reply: no approval chat

    def __init__(self, config: Any, route: Route) -> None:
        super().__init__(config, route)
        self._waiting: dict[str, asyncio.Future[str]] = {}
        self._sinks: dict[str, TurnProgress] = {}  # request id → the caller's progress
        self._abandoned: set[str] = set()  # requests whose caller stopped waiting
        self._set_status("running")

    def allow_list(self) -> list[str] | None:
        return None

    async def start(self) -> None:
        self._set_status("running")
        await asyncio.Event().wait()  # nothing to poll: messages come through ask()

    async def ask(
        self,
        sender_id: str,
        chat_id: str,
        text: str,
        media: list[str] | None = None,
        progress: TurnProgress | None = None,
    ) -> str:
        """Run one turn for chat_id and return its reply; raises Refused when not admitted."""
        request_id = secrets.token_hex(8)
        meta = {"message_id": request_id, "dedupe_key": f"{self.name}-{request_id}"}
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = fut
        self._sinks[request_id] = progress or TurnProgress()
        try:
            verdict = await self.handle_inbound(sender_id, chat_id, text, media, meta)
            if not verdict:
                raise Refused(verdict)
            return await fut
        except asyncio.CancelledError:
            self._abandon(request_id)
            raise
        finally:
            self._waiting.pop(request_id, None)
            if request_id not in self._abandoned:
                self._sinks.pop(request_id, None)

    def _abandon(self, request_id: str) -> None:
        sink = self._sinks.get(request_id)
        if sink is not None:
            sink.cancel.set()
        self._abandoned.add(request_id)

    def progress(self, msg: InboundMessage) -> TurnProgress | None:
        sink = self._sinks.get(msg.message_id or "")
        if sink is None:  # a message from before a restart: nobody watches, nobody cancels
            return None
        if msg.message_id in self._abandoned:
            sink.cancel.set()
        return sink

    async def send(self, msg: OutboundMessage) -> None:
        request_id = msg.reply_to or ""
        self._sinks.pop(request_id, None)
        if request_id in self._abandoned:
            self._abandoned.discard(request_id)
            log.info(
                "%s: the caller cancelled the request in %s; reply dropped", self.name, msg.chat_id
            )
            return
        fut = self._waiting.get(request_id)
        if fut is None:
            await self.unrequested(msg)
        elif not fut.done():
            fut.set_result(msg.content)

    async def unrequested(self, msg: OutboundMessage) -> None:
        """A message that answers no waiting request (a tool's message, a reply stored before
        a restart): dropped here."""
        log.info("%s: no caller waits for a reply in %s; dropped", self.name, msg.chat_id)


class LocalAPIChannel(RequestChannel):
    """The local HTTP API's turns: chat `user`, session http:<user>."""

    name = "http"


class TerminalChannel(RequestChannel):
    """`nanobot agent`: chat = the session name, session cli:<name>. Messages that answer no
    request (a tool's message, a stored reply from an interrupted run) are printed."""

    sends_files = True  # the terminal names the file (it is on this machine already)

    name = "cli"
    # The terminal UI's y/N question (it pauses its spinner around it); None = the plain
    # prompt below. Called with the request's text; returns True for yes.
    confirm: Callable[[str], Awaitable[bool]] | None = None

    async def unrequested(self, msg: OutboundMessage) -> None:
        files = "".join(f"\n  (file: {path})" for path in msg.media)
        print(f"\nnanobot: {msg.content}{files}\n", flush=True)

    async def ask_approval(self, text: str) -> bool:
        """A risky tool call waits for the local user's y/N (security.approval); anything but
        y/yes — an empty line, end of input, no terminal — is no."""
        if self.confirm is not None:
            return await self.confirm(text)
        if not sys.stdin.isatty():
            print(f"\nnanobot: {text}\n(no terminal to answer on: denied)", flush=True)
            return False
        try:
            answer = await asyncio.to_thread(input, f"\n{text}\nRun it? [y/N] ")
        except EOFError:
            return False
        return answer.strip().lower() in ("y", "yes")
