"""A per-chat "typing…" indicator shared by the channels: refcounted, refreshed, bounded."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class Indicator:
    """show(chat) starts `pulse(chat)` after `delay` and repeats it every `interval` (for at
    most `limit` seconds) until every show() of that chat was undone by hide(); then
    `off(chat)` runs, when given. Turns of one chat overlap, hence the count."""

    def __init__(
        self,
        pulse: Callable[[str], Awaitable[None]],
        *,
        interval: float,
        delay: float = 0.0,
        limit: float = 600.0,
        off: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self.pulse, self.off = pulse, off
        self.interval, self.delay, self.limit = interval, delay, limit
        self._tasks: dict[str, asyncio.Task] = {}
        self._refs: dict[str, int] = {}

    def show(self, chat_id: str) -> None:
        self._refs[chat_id] = self._refs.get(chat_id, 0) + 1
        if chat_id not in self._tasks:
            self._tasks[chat_id] = asyncio.get_running_loop().create_task(self._loop(chat_id))

    def hide(self, chat_id: str) -> None:
        left = self._refs.get(chat_id, 0) - 1
        if left > 0:
            self._refs[chat_id] = left
            return
        self._refs.pop(chat_id, None)
        task = self._tasks.pop(chat_id, None)
        if task is not None:
            task.cancel()
            if self.off is not None:
                asyncio.get_running_loop().create_task(self.off(chat_id))

    def stop(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        self._tasks.clear()
        self._refs.clear()

    async def _loop(self, chat_id: str) -> None:
        deadline = time.monotonic() + self.limit
        await asyncio.sleep(self.delay)
        while time.monotonic() < deadline:
            await self.pulse(chat_id)
            await asyncio.sleep(self.interval)
