"""Runs turns: one chat's messages in order, different chats concurrently, a global bound."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from nanobot.agent.loop import Agent
from nanobot.bus import InboundMessage
from nanobot.tools.base import ToolContext

log = logging.getLogger("nanobot.dispatcher")

FAILURE_REPLY = "Sorry, something went wrong while handling your message. Please try again."


class Dispatcher:
    """Starts one task per inbound message; a per-session lock keeps each chat in order.

    asyncio.Lock wakes waiters first-come first-served, so messages of one chat are answered
    in arrival order; the semaphore is taken inside the lock, so a chat waiting for its own
    previous turn does not hold one of the `max_concurrent` slots.
    """

    def __init__(self, agent: Agent, max_concurrent: int) -> None:
        self.agent = agent
        self._sem = asyncio.Semaphore(max_concurrent)
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self.tasks: set[asyncio.Task] = set()
        self.accepting = True
        self.turns_done = 0

    def submit(
        self, msg: InboundMessage, deliver: Callable[[InboundMessage, str], Awaitable[None]]
    ) -> asyncio.Task | None:
        if not self.accepting:
            return None
        task = asyncio.create_task(self._run(msg, deliver))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def turn(self, msg: InboundMessage) -> str:
        """Run one turn for msg under its session's lock and the global bound; returns the reply."""
        key = msg.session_key
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock, self._sem:
                ctx = ToolContext(
                    channel=msg.channel,
                    chat_id=msg.chat_id,
                    sender_id=msg.sender_id,
                    session_key=key,
                )
                return await self.agent.handle(msg.content, ctx)
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]  # bounded memory however many chats come and go
            else:
                self._locks[key] = (lock, users - 1)

    async def _run(self, msg: InboundMessage, deliver) -> None:
        try:
            reply = await self.turn(msg)
        except Exception:  # boundary: one broken turn must not take the gateway down
            log.exception("turn failed for %s", msg.session_key)
            reply = FAILURE_REPLY
        try:
            await deliver(msg, reply)
        except Exception:  # boundary: the channel already retried; keep the message for later
            log.exception(
                "could not deliver the reply for %s; it stays in the inbox", msg.session_key
            )
            return
        self.turns_done += 1

    async def drain(self, timeout: float) -> bool:
        """Stop accepting and wait for running turns; True when all finished in time."""
        self.accepting = False
        if not self.tasks:
            return True
        _, pending = await asyncio.wait(set(self.tasks), timeout=timeout)
        return not pending
