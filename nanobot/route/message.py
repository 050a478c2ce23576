"""The messages that travel the route: inbound (with its origin) and outbound (threaded to it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class InboundMessage:
    """One message for the agent and where it came from.

    channel/chat_id/sender_id are the origin; `metadata` carries what the channel needs to
    thread a reply (message_id, thread ids, e-mail Message-ID …) and the route's own keys
    (`dedupe_key`, `origin` for internal producers such as "cron"). `media` are local paths.
    """

    channel: str  # "telegram", "email", "whatsapp", "cli", "http", …
    sender_id: str
    chat_id: str
    content: str
    media: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def session_key(self) -> str:
        return f"{self.channel}:{self.chat_id}"

    @property
    def message_id(self) -> str | None:
        value = self.metadata.get("message_id")
        return None if value is None else str(value)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict for JSON (what dataclasses.asdict gives, without its deep copy:
        the journal serializes it at once)."""
        return {
            "channel": self.channel,
            "sender_id": self.sender_id,
            "chat_id": self.chat_id,
            "content": self.content,
            "media": self.media,
            "metadata": self.metadata,
        }


@dataclass
class OutboundMessage:
    channel: str
    chat_id: str
    content: str
    reply_to: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    media: list[str] = field(default_factory=list)  # files to send along (local paths)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict for JSON (see InboundMessage.to_dict)."""
        return {
            "channel": self.channel,
            "chat_id": self.chat_id,
            "content": self.content,
            "reply_to": self.reply_to,
            "metadata": self.metadata,
            "media": self.media,
        }


# Inbound metadata a channel may use to thread its reply; the route's own keys stay behind.
_ROUTE_KEYS = frozenset({"dedupe_key", "inbox_id", "inbox_key"})


def reply_for(msg: InboundMessage, text: str) -> OutboundMessage:
    """The reply to msg: same channel and chat, threaded to its message, its metadata kept."""
    meta = {k: v for k, v in msg.metadata.items() if k not in _ROUTE_KEYS}
    return OutboundMessage(msg.channel, msg.chat_id, text, msg.message_id, meta)
