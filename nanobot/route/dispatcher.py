"""Runs turns and delivers their replies: one chat in order, chats concurrently, a global bound.

For each accepted message: turn → reply stored (the message retired with that write) →
delivered through the origin's channel → record retired. See route/store.py for what a crash
at each point leaves behind.
"""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Protocol

from nanobot import paths
from nanobot.route.message import InboundMessage, OutboundMessage, reply_for
from nanobot.route.store import Store
from nanobot.tools.base import ToolContext

log = logging.getLogger("nanobot.dispatcher")

FAILURE_REPLY = "Sorry, something went wrong while handling your message. Please try again."
DISK_FULL_REPLY = (
    "Sorry, the server is out of disk space, so I could not finish your message. "
    "It is kept and will be answered once space is freed."
)
DISK_RETRY_SECONDS = 30.0
DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}

# The turn: the agent's handle(msg, ctx) -> reply text.
TurnFn = Callable[[InboundMessage, ToolContext], Awaitable[str]]


class Deliverer(Protocol):
    """What the dispatcher needs from a channel (channels/base.py's Channel has more)."""

    async def send(self, msg: OutboundMessage) -> None: ...
    def turn_started(self, msg: InboundMessage) -> None: ...
    def turn_finished(self, msg: InboundMessage) -> None: ...


class _Silent:
    """Stands in for the channel when a reply is empty: nothing to send, the record retired."""

    async def send(self, msg: OutboundMessage) -> None:
        return None


_NOTHING_TO_SEND = _Silent()


class Outbox:
    """A tool's way to send to a chat now (the message tool, approvals, subagent reports):
    the origin's chat by default; stored before sending, like a reply."""

    def __init__(self, dispatcher: Dispatcher, origin: InboundMessage) -> None:
        self._dispatcher = dispatcher
        self._origin = origin

    async def send(
        self,
        text: str,
        *,
        channel: str | None = None,
        chat_id: str | None = None,
        media: list[str] | None = None,
    ) -> None:
        o = self._origin
        out = OutboundMessage(channel or o.channel, chat_id or o.chat_id, text)
        if out.channel == o.channel and out.chat_id == o.chat_id:
            out.metadata = reply_for(o, text).metadata
        out.media = list(media or [])
        await self._dispatcher.send_now(out)


class Dispatcher:
    """Starts one task per accepted message; a per-session lock keeps each chat in order.

    asyncio.Lock wakes waiters first-come first-served, so messages of one chat are answered
    in arrival order; the semaphore is taken inside the lock, so a chat waiting for its own
    previous turn does not hold one of the `max_concurrent` slots.
    """

    def __init__(
        self,
        run_turn: TurnFn,
        store: Store | None,
        channels: Mapping[str, Deliverer],
        max_concurrent: int,
    ) -> None:
        self.run_turn = run_turn
        self.store = store
        self.channels = channels
        self._sem = asyncio.Semaphore(max_concurrent)
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self.tasks: set[asyncio.Task] = set()
        self.accepting = True
        self.turns_done = 0
        self.disk_retry = (
            DISK_RETRY_SECONDS  # seconds before a turn that found the disk full runs again
        )

    # -- intake ------------------------------------------------------------------------------

    def submit(self, msg: InboundMessage) -> asyncio.Task | None:
        """Run msg's turn and deliver the reply in a task of its own (None once draining)."""
        if not self.accepting:
            return None
        task = asyncio.create_task(self._run(msg))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def recover(self) -> tuple[int, int]:
        """After a restart: send stored replies, queue unanswered messages. (resent, queued)"""
        if self.store is None:
            return 0, 0
        pending = await asyncio.to_thread(self.store.pending)
        unsent = await asyncio.to_thread(self.store.unsent)
        for name, out in unsent:
            self._spawn(self._deliver(out, name))
        for msg in pending:
            self.submit(msg)
        return len(unsent), len(pending)

    # -- one message -------------------------------------------------------------------------

    async def turn(self, msg: InboundMessage) -> str:
        """Run one turn for msg under its session's lock and the global bound; returns the reply."""
        key = msg.session_key
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock, self._sem:
                return await self.run_turn(msg, self.context_for(msg))
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]  # bounded memory however many chats come and go
            else:
                self._locks[key] = (lock, users - 1)

    def context_for(self, msg: InboundMessage) -> ToolContext:
        hook = getattr(self.channels.get(msg.channel), "progress", None)
        return ToolContext(
            channel=msg.channel,
            chat_id=msg.chat_id,
            sender_id=msg.sender_id,
            session_key=msg.session_key,
            message_id=msg.message_id,
            outbox=Outbox(self, msg),
            progress=hook(msg) if hook is not None else None,
        )

    async def _run(self, msg: InboundMessage) -> None:
        # "typing…" is for a person waiting; an internal run (cron, heartbeat) may send nothing.
        channel = None if msg.metadata.get("origin") else self.channels.get(msg.channel)
        if channel is not None:
            channel.turn_started(msg)
        try:
            text: str | None
            try:
                text = await self.turn(msg)
            except Exception as e:  # boundary: one broken turn must not take the gateway down
                if isinstance(e, OSError) and e.errno in DISK_FULL:
                    text = None  # a session or memory write found the disk full
                    self._out_of_space(msg, e, "the turn")
                else:
                    log.exception("turn failed for %s", msg.session_key)
                    text = FAILURE_REPLY
            out = reply_for(msg, DISK_FULL_REPLY if text is None else text)
            name = None
            if text is not None:
                try:
                    name = await self._store_reply(msg, out)
                except OSError as e:
                    self._out_of_space(msg, e, "the reply")
                    out.content = DISK_FULL_REPLY
        finally:
            if channel is not None:
                channel.turn_finished(msg)
        if await self._deliver(out, name):
            self.turns_done += 1

    async def _store_reply(self, msg: InboundMessage, out: OutboundMessage) -> str | None:
        if self.store is None:
            return None
        return await asyncio.to_thread(self.store.reply, msg, out)

    def _out_of_space(self, msg: InboundMessage, err: OSError, what: str) -> None:
        """A write failed: keep the message (unanswered in the journal) and run its turn
        again later; the user is told the server is out of space."""
        where = self.store.path.parent if self.store is not None else Path(".")
        free = paths.free_bytes(where)
        log.error(
            "could not write %s for %s (%s: %s; %d bytes free under %s); the message is kept "
            "and its turn runs again in %.0f s",
            what,
            msg.session_key,
            err.strerror or err,
            err.filename or where,
            free,
            where,
            self.disk_retry,
        )
        asyncio.get_running_loop().call_later(self.disk_retry, self.submit, msg)

    async def send_now(self, out: OutboundMessage) -> None:
        """Store and deliver a message that is not a reply; raises when it cannot be delivered
        (ValueError when it carries files and its channel cannot send files)."""
        channel = self.channels.get(out.channel)
        if out.media and not getattr(channel, "sends_files", False):
            raise ValueError(f"the {out.channel} channel cannot send files; send the text only")
        name = None
        if self.store is not None:
            name = await asyncio.to_thread(self.store.outgoing, out)
        if not await self._deliver(out, name):
            raise OSError(f"could not deliver to {out.channel}:{out.chat_id}; see the log")

    async def _deliver(self, out: OutboundMessage, name: str | None) -> bool:
        """Send out (nothing when it is empty: an internal run with nothing to say); True when
        the channel took it."""
        channel = self.channels.get(out.channel)
        if not out.content.strip():
            channel = _NOTHING_TO_SEND
        if channel is None:
            log.warning("no %s channel to answer %s; the reply is kept", out.channel, out.chat_id)
            return False
        try:
            await channel.send(out)
        except Exception:  # boundary: the channel already retried; the stored reply is kept
            log.exception(
                "could not deliver to %s:%s; the reply is kept and sent after a restart",
                out.channel,
                out.chat_id,
            )
            return False
        if name is not None and self.store is not None and self.store.delivered(name):
            await asyncio.to_thread(self.store.compact)
        return True

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def drain(self, timeout: float) -> bool:
        """Stop accepting and wait for running turns; True when all finished in time."""
        self.accepting = False
        if not self.tasks:
            return True
        _, pending = await asyncio.wait(set(self.tasks), timeout=timeout)
        return not pending
