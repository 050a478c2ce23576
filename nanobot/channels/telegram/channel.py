"""Telegram channel: long-polls the Bot API, admits messages through BaseChannel, sends replies."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from nanobot.backoff import Backoff
from nanobot.channels.base import BaseChannel, SendError
from nanobot.channels.indicator import Indicator
from nanobot.channels.telegram import approve, offsets
from nanobot.channels.telegram.botapi import (
    ALLOWED_UPDATES,
    BotAPI,
    Incoming,
    MalformedUpdate,
    TelegramError,
    TransportError,
    is_int,
    parse_update,
    with_retries,
)
from nanobot.channels.telegram.format import TELEGRAM_LIMIT, markdown_to_html, split_message
from nanobot.channels.telegram.groups import admits
from nanobot.channels.telegram.live import Draft, Drafts, register_commands
from nanobot.channels.telegram.media import MediaFetcher
from nanobot.errors import ConfigError
from nanobot.route.message import InboundMessage, OutboundMessage
from nanobot.route.route import Route
from nanobot.workers import run_pooled

log = logging.getLogger("nanobot.channels.telegram")

T = TypeVar("T")
GREETING = "Hi! I'm nanobot, your personal AI assistant. Send me a message; /help lists commands."
HELP = (
    "Commands:\n"
    "/start — greeting\n"
    "/help — this list\n"
    "/reset — start a new conversation (forgets this chat's history)\n"
    "Anything else goes to the assistant."
)


class _Stopped(Exception):
    """stop() was called while waiting."""


class TelegramChannel(BaseChannel):
    """Telegram over the Bot API (long polling, no webhook).

    The update offset is persisted in NANOBOT_HOME/state/telegram_offset after each update has
    been admitted or refused, so nothing sent while the gateway was down is lost and nothing is
    handled twice. stop() is final for the object. Delays are constructor parameters so tests
    can make them small.
    """

    name = "telegram"
    sends_files = True

    def __init__(
        self,
        config: Any,
        route: Route,
        *,
        transcriber: Callable[[Path], str] | None = None,
        backoff_base: float = 1.0,
        backoff_max: float = 30.0,
        send_budget: float = 60.0,
        typing_interval: float = 4.0,
        typing_delay: float = 1.0,
        typing_max: float = 600.0,
        send_progress: bool = True,
        send_tool_hints: bool = False,
    ) -> None:
        super().__init__(config, route)
        self.api = BotAPI(config.token, config.api_base, proxy=config.proxy)
        self.backoff = Backoff(backoff_base, backoff_max)
        self.send_budget = send_budget
        self.media = MediaFetcher(
            self.api, transcriber, config.max_media_bytes, send_budget, self.backoff
        )
        self.typing_interval = typing_interval
        # A reply that comes within typing_delay needs no "typing…" (and skips an API call).
        self.typing_delay = typing_delay
        self.typing_max = typing_max
        self.bot_username: str | None = None
        self._offset: int | None = None
        self._saved_offset: int | None = None
        self._saver: asyncio.Task | None = None
        self._stop_event = asyncio.Event()
        # "typing…" only for replies slower than typing_delay (a fast one skips the API call).
        self.typing = Indicator(
            self._chat_action, interval=typing_interval, delay=typing_delay, limit=typing_max
        )
        self._failures = 0
        self.drafts = Drafts(self.api.call, send_progress, send_tool_hints)

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Poll until stop(); raises ConfigError when Telegram rejects the token."""
        if not self.config.token:
            raise ConfigError("Telegram is enabled but channels.telegram.token is empty")
        self._set_status("starting")
        self._offset = await asyncio.to_thread(self._load_offset)
        try:
            await self._connect()
            while not self._stop_event.is_set():
                await self._handle_batch(await self._poll())
        except _Stopped:
            pass
        self._set_status("stopped")

    async def stop(self) -> None:
        self._stop_event.set()
        if self._saver is not None:
            await asyncio.gather(self._saver, return_exceptions=True)
        self.typing.stop()
        self.api.close()
        self._set_status("stopped")

    async def _until_stop(self, aw: Awaitable[T]) -> T:
        task = asyncio.ensure_future(aw)
        waiter = asyncio.ensure_future(self._stop_event.wait())
        try:
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            if not task.done():
                task.cancel()  # its connection is closed; an answer on the way is dropped
        if not task.done():
            raise _Stopped
        return task.result()

    async def _pause(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stop_event.wait(), seconds)
        except TimeoutError:
            return
        raise _Stopped

    async def _api(self, method: str, params: dict | None = None, timeout: float = 30.0) -> Any:
        """One call, interrupted by stop(); 401/404 (bad token) become ConfigError."""
        try:
            return await self._until_stop(self.api.call(method, params, timeout=timeout))
        except TelegramError as e:
            if e.code in (401, 404):
                self._set_status(f"error: token rejected ({e.code})")
                raise ConfigError(
                    f"Telegram rejected the bot token ({e.code} {e.description}): "
                    "set a valid channels.telegram.token (from @BotFather)"
                ) from None
            raise

    async def _failed(self, method: str, err: TelegramError | TransportError) -> None:
        """Log a failed getMe/getUpdates, set status, and wait before the next attempt."""
        wait = self.backoff.delay(self._failures)
        self._failures += 1
        if isinstance(err, TelegramError) and err.code == 409:
            log.error(
                "Telegram %s conflict (409): another instance is polling this bot or a webhook "
                "is set. Stop the other instance, or remove the webhook (Bot API deleteWebhook). "
                "Retrying in %.0f s",
                method,
                wait,
            )
            self._set_status("error: conflict: another poller or a webhook is active")
        else:
            if isinstance(err, TelegramError) and err.code == 429 and err.retry_after:
                wait = err.retry_after
            log.warning("Telegram %s failed (%s); retrying in %.1f s", method, err, wait)
            self._set_status(f"error: {err}")
        await self._pause(wait)

    async def _connect(self) -> None:
        while True:
            try:
                me = await self._api("getMe")
                break
            except (TelegramError, TransportError) as e:
                await self._failed("getMe", e)
        self._failures = 0
        self.bot_username = me.get("username") if isinstance(me, dict) else None
        log.info("Telegram bot @%s connected; polling for updates", self.bot_username)
        await register_commands(self.api.call)
        self._set_status("running")

    async def _poll(self) -> list:
        params: dict[str, Any] = {
            "timeout": self.config.poll_timeout,
            "allowed_updates": ALLOWED_UPDATES,
        }
        if self._offset is not None:
            params["offset"] = self._offset
        try:
            result = await self._api("getUpdates", params, timeout=self.config.poll_timeout + 10)
        except (TelegramError, TransportError) as e:
            await self._failed("getUpdates", e)
            return []
        self._failures = 0
        self._set_status("running")
        if not isinstance(result, list):
            log.warning("Telegram getUpdates answered something other than a list; ignored")
            return []
        return result

    # ---- inbound ---------------------------------------------------------------------------

    def _load_offset(self) -> int | None:
        return offsets.load(self._bot_id())

    def _save_offset(self, offset: int) -> None:
        offsets.save(self._bot_id(), offset)

    def _bot_id(self) -> str:
        # The part of the token before ":" is the bot's public user id, not the secret.
        return self.config.token.split(":", 1)[0]

    async def _handle_batch(self, updates: list) -> None:
        """Handle one getUpdates answer: chats concurrently, each chat's updates in order.

        The offset moves past the batch only once every update in it was admitted (durably)
        or refused; a crash before that gets the batch again and the inbox drops repeats.
        """
        by_chat: dict[object, list] = {}
        for update in updates:
            by_chat.setdefault(_chat_of(update), []).append(update)

        async def one_chat(chat_updates: list) -> None:
            for update in chat_updates:
                await self._handle_update(update)

        await asyncio.gather(*(one_chat(u) for u in by_chat.values()))
        ids = [
            u["update_id"] for u in updates if isinstance(u, dict) and is_int(u.get("update_id"))
        ]
        if ids and (self._offset is None or max(ids) + 1 > self._offset):
            self._offset = max(ids) + 1
            if self._saver is None or self._saver.done():
                self._saver = asyncio.create_task(self._save_offsets())

    async def _handle_update(self, update: Any) -> None:
        uid = update.get("update_id") if isinstance(update, dict) else None
        if not is_int(uid):
            log.warning("Skipping a Telegram update without an update_id")
            return
        if self._offset is not None and uid < self._offset:
            return  # already handled before a restart
        if "callback_query" in update:  # an approval button (telegram/approve.py)
            await approve.on_callback(self, update["callback_query"])
            return
        try:
            incoming = parse_update(update)
        except MalformedUpdate as e:
            log.warning("Skipping malformed Telegram update %d: %s", uid, e)
            incoming = None
        policy = getattr(self.config, "group_policy", "mention")
        if incoming is not None and not admits(update, policy, self.bot_username, self._bot_id()):
            log.debug("Telegram update %d: a group message not for the bot (groupPolicy)", uid)
            incoming = None
        if incoming is not None:
            incoming.metadata["dedupe_key"] = f"telegram:{uid}"
            incoming.metadata["update_id"] = uid
            await self.handle_inbound(
                incoming.sender,
                incoming.chat_id,
                incoming.text,
                metadata=incoming.metadata,
                prepare=self._preparer(incoming) if incoming.media else None,
            )

    async def _save_offsets(self) -> None:
        """Persist the newest offset in the background, coalescing a burst into few writes.

        The update is already durable in the inbox (which also drops a re-delivered duplicate),
        so the next update need not wait for this write.
        """
        while self._offset is not None and self._saved_offset != self._offset:
            target = self._offset
            await asyncio.to_thread(self._save_offset, target)
            self._saved_offset = target

    def command_reply(self, content: str) -> str | None:
        words = content.split(maxsplit=1)
        command = words[0].split("@", 1)[0].lower() if words else ""
        return {"/start": GREETING, "/help": HELP}.get(command)

    def _preparer(self, incoming: Incoming):
        async def prepare() -> tuple[str, list[str]]:
            lines = [incoming.text] if incoming.text else []
            paths: list[str] = []
            for ref in incoming.media:
                lines.append(await self.media.fetch(ref, paths))
            return "\n".join(lines), paths

        return prepare

    # ---- outbound --------------------------------------------------------------------------

    async def send(self, msg: OutboundMessage) -> None:
        """Send msg.content as HTML parts of ≤ 4096 characters; a part whose HTML Telegram
        refuses is resent as plain text. Raises SendError when a part cannot be delivered."""
        if await approve.send_request(self, msg):  # an approval request: buttons, no draft
            return
        draft = self.drafts.take(msg.chat_id, msg.reply_to)
        for n, part in enumerate(split_message(msg.content, TELEGRAM_LIMIT)):
            params: dict[str, Any] = {"chat_id": msg.chat_id, "text": markdown_to_html(part)}
            params["parse_mode"] = "HTML"
            if n == 0 and draft is not None and await draft.become(params, part):
                continue  # the live message now shows the reply's first part
            if n == 0 and msg.reply_to and str(msg.reply_to).isdigit():
                params["reply_to_message_id"] = int(msg.reply_to)
                params["allow_sending_without_reply"] = True
            try:
                try:
                    await self._send_part(params)
                except TelegramError as e:
                    if e.code != 400 or "can't parse entities" not in e.description.lower():
                        raise
                    log.warning("Telegram refused the HTML of a reply part; resending as text")
                    params.pop("parse_mode")
                    params["text"] = part
                    await self._send_part(params)
            except (TelegramError, TransportError) as e:
                raise SendError(f"Telegram sendMessage failed: {e}") from None
        for path in msg.media:
            await self._send_file(msg.chat_id, Path(path))

    async def _send_file(self, chat_id: str, path: Path) -> None:
        """One file as a document (Telegram keeps its name and bytes as they are)."""
        try:
            await with_retries(
                "sendDocument",
                run_pooled,
                self.api.upload,
                "sendDocument",
                {"chat_id": chat_id},
                "document",
                path,
                budget=self.send_budget,
                backoff=self.backoff,
                timeout=120,
            )
        except (TelegramError, TransportError) as e:
            raise SendError(f"Telegram sendDocument failed for {path.name}: {e}") from None

    async def _send_part(self, params: dict) -> None:
        await with_retries(
            "sendMessage",
            self.api.call,
            "sendMessage",
            params,
            budget=self.send_budget,
            backoff=self.backoff,
        )

    def turn_started(self, msg: InboundMessage) -> None:
        self.typing.show(msg.chat_id)

    def progress(self, msg: InboundMessage) -> Draft | None:
        return self.drafts.open(msg.chat_id, msg.message_id)  # the reply growing as written

    def turn_finished(self, msg: InboundMessage) -> None:
        self.typing.hide(msg.chat_id)

    async def _chat_action(self, chat_id: str) -> None:
        params = {"chat_id": chat_id, "action": "typing"}
        try:
            await self.api.call("sendChatAction", params, timeout=10)
        except (TelegramError, TransportError) as e:
            log.debug("sendChatAction failed: %s", e)


def _chat_of(update: Any) -> object:
    """The chat an update belongs to (None when it has none), for per-chat ordering."""
    if not isinstance(update, dict):
        return None
    for kind in ("message", "edited_message"):
        message = update.get(kind)
        if isinstance(message, dict) and isinstance(message.get("chat"), dict):
            return message["chat"].get("id")
    return None
