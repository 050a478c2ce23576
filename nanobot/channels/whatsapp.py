"""WhatsApp channel: talks to the Node.js bridge (nanobot/bridge, PROTOCOL.md) over a WebSocket.

Authenticates first with channels.whatsapp.bridgeToken, reconnects with backoff, admits every
message through BaseChannel.handle_inbound and acks it to the bridge only once it is durable in
the inbox (or was refused), so neither a gateway crash nor a bridge restart loses a message. The
bridge resends un-acked messages; the dedupe key "whatsapp-<message id>" makes the route drop
the repeats.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from pathlib import Path
from typing import Any

from nanobot.channels.base import BaseChannel, SendError, printable
from nanobot.channels.indicator import Indicator
from nanobot.channels.telegram.format import split_message
from nanobot.channels.whatsapp_bridge import ManagedBridge
from nanobot.channels.ws import ConnectionClosed, HandshakeError, WebSocket
from nanobot.errors import ConfigError
from nanobot.route.message import InboundMessage, OutboundMessage
from nanobot.route.route import Route
from nanobot.security.access import is_allowed

log = logging.getLogger("nanobot.channels.whatsapp")

WHATSAPP_LIMIT = 4000
AUTH_FAILED = 4001


class WhatsAppChannel(BaseChannel):
    """WhatsApp through the bridge. Delays are parameters so tests can make them small."""

    name = "whatsapp"

    def __init__(
        self,
        config: Any,
        route: Route,
        *,
        transcriber: Any = None,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        send_budget: float = 60.0,
        typing_interval: float = 10.0,
    ) -> None:
        super().__init__(config, route)
        self.transcriber = transcriber
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.send_budget = send_budget
        self.typing_interval = typing_interval
        self.link_state = "unknown"
        self._ws: WebSocket | None = None
        self._connected = asyncio.Event()
        self._stop_event = asyncio.Event()
        self._ids = itertools.count(1)
        self._replies: dict[str, asyncio.Future] = {}
        # WhatsApp drops "composing" after a while: it is refreshed every typing_interval.
        self.typing = Indicator(
            lambda chat: self._presence(chat, True),
            interval=typing_interval,
            off=lambda chat: self._presence(chat, False),
        )
        self._bridge: ManagedBridge | None = None

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect to the bridge until stop(); ConfigError when the token is missing."""
        if not self.config.bridge_token:
            raise ConfigError(
                "WhatsApp is enabled but channels.whatsapp.bridgeToken is empty: set it to the "
                "bridge's token (BRIDGE_TOKEN), e.g. from `openssl rand -hex 32`"
            )
        self._stop_event.clear()
        self._set_status("starting")
        if getattr(self.config, "manage_bridge", False) and self._bridge is None:
            self._bridge = ManagedBridge(self.config.bridge_url, self.config.bridge_token)
            self._bridge.start()
        failures = 0
        while not self._stop_event.is_set():
            try:
                await self._session()
                failures = 0
            except ConnectionClosed as e:
                if self._stop_event.is_set():
                    break
                if e.code == AUTH_FAILED:
                    log.error(
                        "the WhatsApp bridge refused the token (close %d): "
                        "channels.whatsapp.bridgeToken must equal the bridge's BRIDGE_TOKEN",
                        e.code,
                    )
                    self._set_status("error: the bridge refused the token")
                else:
                    log.warning("WhatsApp bridge connection closed (%s)", e)
                    self._set_status(f"error: bridge connection closed ({e.code})")
            except (OSError, HandshakeError, TimeoutError, ValueError) as e:
                log.warning("WhatsApp bridge at %s unreachable: %s", self.config.bridge_url, e)
                self._set_status("error: bridge unreachable")
            failures += 1
            delay = min(self.backoff_base * 2 ** min(failures - 1, 10), self.backoff_max)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_event.wait(), delay)
        self._set_status("stopped")

    async def stop(self) -> None:
        self._stop_event.set()
        self.typing.stop()
        ws = self._ws
        if ws is not None:
            await ws.close(wait=1.0)
        if self._bridge is not None:
            await self._bridge.stop()
            self._bridge = None
        self._set_status("stopped")

    async def _session(self) -> None:
        """One connection: authenticate, then read frames until it ends (raises why)."""
        ws = await WebSocket.connect(self.config.bridge_url, timeout=10)
        inbox: asyncio.Queue = asyncio.Queue()
        worker = asyncio.create_task(self._admit_loop(ws, inbox))
        try:
            await ws.send_text(json.dumps({"type": "auth", "token": self.config.bridge_token}))
            ready = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if not isinstance(ready, dict) or ready.get("type") != "ready":
                raise ValueError("the bridge did not answer the auth frame with 'ready'")
            self._ws = ws
            self._connected.set()
            self._on_status(ready.get("status") or {})
            log.info("connected to the WhatsApp bridge (%d queued)", ready.get("queued", 0))
            while not self._stop_event.is_set():
                frame = json.loads(await ws.recv())
                if isinstance(frame, dict):
                    self._on_frame(frame, inbox)
        finally:
            self._connected.clear()
            self._ws = None
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
            for fut in self._replies.values():
                if not fut.done():
                    fut.set_exception(ConnectionClosed(1006, "bridge connection lost"))
            self._replies.clear()
            await ws.close(wait=0)

    def _on_frame(self, frame: dict, inbox: asyncio.Queue) -> None:
        kind = frame.get("type")
        if kind == "message":
            inbox.put_nowait(frame)
        elif kind in ("sent", "send_failed"):
            fut = self._replies.pop(str(frame.get("id")), None)
            if fut is not None and not fut.done():
                fut.set_result(frame)
        elif kind == "status":
            self._on_status(frame)
        elif kind == "qr":
            log.warning("WhatsApp is not linked: run `nanobot channels login whatsapp`")
        elif kind == "error":
            log.warning("the WhatsApp bridge reported: %s", printable(str(frame.get("error"))))

    def _on_status(self, status: dict) -> None:
        state = str(status.get("state") or "unknown")
        if state != self.link_state:
            log.info("WhatsApp link state: %s %s", state, printable(str(status.get("detail", ""))))
        self.link_state = state
        if state == "open":
            self._set_status("running")
        elif state == "logged_out":
            log.error("WhatsApp logged this device out: run `nanobot channels login whatsapp`")
            self._set_status("error: logged out; run nanobot channels login whatsapp")
        elif state == "qr":
            self._set_status("error: not linked; run nanobot channels login whatsapp")
        else:
            self._set_status(f"error: WhatsApp {state}")

    # ---- inbound ---------------------------------------------------------------------------

    async def _admit_loop(self, ws: WebSocket, inbox: asyncio.Queue) -> None:
        """Admit messages in order; ack each once durable or refused (kept on failure)."""
        while True:
            frame = await inbox.get()
            msg_id = str(frame.get("id") or "")
            if not msg_id:
                continue
            try:
                await self._admit(frame)
            except OSError:
                continue  # not acked: the bridge offers it again on the next connection
            with contextlib.suppress(ConnectionClosed):
                await ws.send_text(json.dumps({"type": "ack", "id": msg_id}))

    async def _admit(self, frame: dict) -> None:
        sender = whatsapp_sender(frame)
        chat = str(frame.get("chat") or "")
        if not sender or not chat:
            log.warning("skipping a WhatsApp message without sender or chat")
            return
        lid = frame.get("senderLid")
        allow = list(self.config.allow_from)
        if lid and not frame.get("senderPhone") and not is_allowed(self.name, sender, allow):
            log.warning(
                "WhatsApp sender %s is known only by its LID: WhatsApp did not share the phone "
                'number. To allow this sender, add "%s" to channels.whatsapp.allowFrom',
                printable(lid),
                printable(lid),
            )
        text, media, voice = describe(frame)
        metadata = {
            "dedupe_key": f"whatsapp-{frame['id']}",
            "message_id": frame["id"],
            "is_group": bool(frame.get("isGroup")),
            "push_name": str(frame.get("pushName") or "")[:100],
            "kind": frame.get("kind", "text"),
        }
        prepare = self._transcribe(text, voice) if voice else None
        await self.handle_inbound(sender, chat, text, media, metadata, prepare=prepare)

    def _transcribe(self, text: str, path: str):
        async def prepare() -> tuple[str, list[str]]:
            if self.transcriber is None:
                return f"{text} (no transcription configured)", [path]
            try:
                said = await asyncio.to_thread(self.transcriber, Path(path))
            except Exception as e:  # noqa: BLE001 — any transcriber failure becomes a note
                log.warning("voice note transcription failed: %s", e)
                return f"{text} (transcription failed)", [path]
            return f"[voice note] {said}", [path]

        return prepare

    # ---- outbound --------------------------------------------------------------------------

    async def send(self, msg: OutboundMessage) -> None:
        """Send msg.content in parts of ≤ 4000 characters, retrying across bridge reconnects
        for up to send_budget seconds; SendError when a part cannot be delivered."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.send_budget
        for part in split_message(msg.content, WHATSAPP_LIMIT):
            await self._send_part(msg.chat_id, part, deadline)

    async def _send_part(self, chat: str, text: str, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        attempt, why = 0, "bridge not connected"
        while (left := deadline - loop.time()) > 0:
            try:
                await asyncio.wait_for(self._connected.wait(), left)
                answer = await asyncio.wait_for(self._request(chat, text), max(left, 0.1))
            except TimeoutError:
                break
            except ConnectionClosed:
                why = "bridge connection lost"
            else:
                if answer.get("type") == "sent":
                    return
                why = printable(str(answer.get("error", "send failed")))[:200]
                if not answer.get("retryable", True):
                    break
            attempt += 1
            await asyncio.sleep(min(self.backoff_base * 2 ** min(attempt, 6), 5.0))
        raise SendError(f"WhatsApp send failed: {why}")

    async def _request(self, chat: str, text: str) -> dict:
        ws = self._ws
        if ws is None:
            raise ConnectionClosed(1006, "bridge not connected")
        req_id = f"s{next(self._ids)}"
        fut = asyncio.get_running_loop().create_future()
        self._replies[req_id] = fut
        try:
            await ws.send_text(json.dumps({"type": "send", "id": req_id, "to": chat, "text": text}))
            return await fut
        finally:
            self._replies.pop(req_id, None)

    def turn_started(self, msg: InboundMessage) -> None:
        self.typing.show(msg.chat_id)

    def turn_finished(self, msg: InboundMessage) -> None:
        self.typing.hide(msg.chat_id)

    async def _presence(self, chat_id: str, on: bool) -> None:
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(ConnectionClosed):
                await ws.send_text(json.dumps({"type": "typing", "to": chat_id, "on": on}))


def whatsapp_sender(frame: dict) -> str:
    """The sender for allowFrom: the phone JID, "phone JID|LID" when a LID was resolved, or the
    bare LID when WhatsApp gave no phone number."""
    phone = frame.get("senderPhone")
    lid = frame.get("senderLid")
    if isinstance(phone, str) and phone.isascii() and phone.isdigit():
        jid = f"{phone}@s.whatsapp.net"
        return f"{jid}|{lid}" if isinstance(lid, str) and lid else jid
    sender = frame.get("sender")
    return sender if isinstance(sender, str) else ""


def describe(frame: dict) -> tuple[str, list[str], str]:
    """(text for the agent, media paths, path of a voice note to transcribe or "")."""
    kind = frame.get("kind", "text")
    text = str(frame.get("text") or "")
    if kind in ("image", "video", "document"):
        name = f" {frame.get('fileName')}" if frame.get("fileName") else ""
        text = f"[{kind}{name}: not downloaded] {text}".strip()
    media = [m["path"] for m in frame.get("media") or [] if isinstance(m, dict) and m.get("path")]
    if kind in ("voice", "audio"):
        label = "[voice note]" if kind == "voice" else "[audio]"
        if not media:
            return f"{label} (could not be downloaded)", [], ""
        return label, media, media[0] if kind == "voice" else ""
    return text, media, ""
