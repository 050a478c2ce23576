"""What Telegram shows around a turn: the reply growing in one message while it is written
(a draft, edited at most once per EDIT_INTERVAL), short tool hints, and the command menu."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from nanobot.agent.progress import TurnProgress
from nanobot.channels.telegram.botapi import TelegramError, TransportError

log = logging.getLogger("nanobot.channels.telegram")

# Telegram allows about one message per second in a chat and 20 a minute in a group; an
# edit counts like a message. Drafts stay well inside that.
EDIT_INTERVAL = 1.2
GROUP_EDIT_INTERVAL = 3.5
FIRST_DRAFT_AFTER = 1.0  # a reply written within a second is just sent: no draft, no edit
DRAFT_CHARS = 3500  # a draft shows the start of the answer; the final reply is split as usual
MAX_HINTS = 4
COMMANDS = [
    {"command": "start", "description": "greeting"},
    {"command": "help", "description": "list the commands"},
    {"command": "reset", "description": "start a new conversation"},
]

Request = Callable[..., Awaitable[Any]]  # BotAPI.call(method, params, timeout=…)


async def register_commands(request: Request) -> None:
    """setMyCommands, so that Telegram offers the commands in its menu; failure is logged."""
    try:
        await request("setMyCommands", {"commands": COMMANDS}, timeout=10)
    except (TelegramError, TransportError) as e:
        log.warning("Telegram setMyCommands failed (%s); the command menu stays as it was", e)


class Draft(TurnProgress):
    """One turn's live message in a chat: plain text (Markdown is rendered only in the final
    reply, which replaces the draft's text via `become`)."""

    def __init__(
        self, request: Request, chat_id: str, reply_to: str | None, text: bool, hints: bool
    ) -> None:
        super().__init__()
        self._request = request
        self.chat_id = chat_id
        self._reply_to = reply_to
        self._show_text, self._show_hints = text, hints
        self._interval = GROUP_EDIT_INTERVAL if chat_id.startswith("-") else EDIT_INTERVAL
        self._answer = ""
        self._hints: list[str] = []
        self._shown = ""
        self.message_id: int | None = None
        self._task: asyncio.Task | None = None
        self._busy = False
        self._closed = False
        self._last_at = float("-inf")  # when the draft was last sent or edited
        self._born: float | None = None  # when there was first something to show

    # -- the turn's hooks (event loop thread) --

    def text(self, delta: str) -> None:
        if self._show_text:
            self._answer += delta
            self._poke()

    def discard(self) -> None:
        self._answer = ""
        self._poke()

    def step(self, hint: str) -> None:
        if self._show_hints:
            self._hints = [*self._hints, hint][-MAX_HINTS:]
            self._poke()

    # -- updating the message --

    def render(self) -> str:
        answer = self._answer.strip()
        if len(answer) > DRAFT_CHARS:
            answer = answer[:DRAFT_CHARS] + " …"
        elif answer:
            answer += " …"
        return "\n".join(self._hints) + ("\n\n" if self._hints and answer else "") + answer

    def _poke(self) -> None:
        if self._closed or (self._task is not None and not self._task.done()):
            return
        if self._born is None:
            self._born = time.monotonic()
        self._task = asyncio.get_running_loop().create_task(self._pump())

    async def _pump(self) -> None:
        await asyncio.sleep(max(0.0, (self._born or 0.0) + FIRST_DRAFT_AFTER - time.monotonic()))
        while not self._closed:
            text = self.render()
            if not text.strip() or text == self._shown:
                return
            self._busy = True
            try:
                wait = await self._update(text)
            finally:
                self._busy = False
            await asyncio.sleep(max(wait, self._interval))

    async def _update(self, text: str) -> float:
        """Send or edit the draft; returns how long Telegram asks to wait (0 if it did not)."""
        params: dict[str, Any] = {"chat_id": self.chat_id, "text": text}
        self._last_at = time.monotonic()
        try:
            if self.message_id is None:
                if self._reply_to and str(self._reply_to).isdigit():
                    params["reply_to_message_id"] = int(self._reply_to)
                    params["allow_sending_without_reply"] = True
                result = await self._request("sendMessage", params, timeout=15)
                self.message_id = result.get("message_id") if isinstance(result, dict) else None
            else:
                params["message_id"] = self.message_id
                await self._request("editMessageText", params, timeout=15)
            self._shown = text
        except TelegramError as e:
            if e.code == 429:
                return float(e.retry_after or self._interval)
            if "not modified" not in e.description.lower():
                log.debug("Telegram draft update failed: %s", e)
        except TransportError as e:
            log.debug("Telegram draft update failed: %s", e)
        return 0.0

    async def close(self) -> None:
        """Stop updating (waits for an update in flight, so message_id is final)."""
        self._closed = True
        task = self._task
        if task is None:
            return
        if not self._busy:
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def become(self, params: dict[str, Any], plain: str) -> bool:
        """Turn the draft into the reply's first part (`params` as for sendMessage, HTML;
        `plain` its text without markup). False when there is no draft message or the edit
        failed — the draft is then deleted and the caller sends the part as usual."""
        await self.close()
        if self.message_id is None:
            return False
        await asyncio.sleep(max(0.0, self._last_at + self._interval - time.monotonic()))
        edit = {"chat_id": self.chat_id, "message_id": self.message_id, "text": params["text"]}
        edit.update({k: v for k, v in params.items() if k == "parse_mode"})
        for attempt in (edit, {**edit, "text": plain, "parse_mode": None}):
            attempt = {k: v for k, v in attempt.items() if v is not None}
            try:
                await self._request("editMessageText", attempt, timeout=15)
                return True
            except TelegramError as e:
                if "not modified" in e.description.lower():
                    return True
                if "can't parse entities" not in e.description.lower():
                    break
            except TransportError:
                break
        try:
            await self._request(
                "deleteMessage",
                {"chat_id": self.chat_id, "message_id": edit["message_id"]},
                timeout=10,
            )
        except (TelegramError, TransportError) as e:
            log.debug("could not delete a Telegram draft: %s", e)
        return False


class Drafts:
    """The live replies of a channel: one per turn, found again by the reply that ends it.
    Off when neither channels.sendProgress nor channels.sendToolHints is on."""

    def __init__(self, request: Request, text: bool, hints: bool) -> None:
        self._request, self.text, self.hints = request, text, hints
        self._open: dict[tuple[str, str], Draft] = {}

    def open(self, chat_id: str, message_id: str | None) -> Draft | None:
        if not (self.text or self.hints):
            return None
        draft = Draft(self._request, chat_id, message_id, self.text, self.hints)
        self._open[(chat_id, str(message_id))] = draft
        return draft

    def take(self, chat_id: str, reply_to: str | None) -> Draft | None:
        return self._open.pop((chat_id, str(reply_to)), None)
