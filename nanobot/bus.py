"""Messages between channels and the agent, and the queues that carry them."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any


@dataclass
class InboundMessage:
    channel: str  # "telegram", "email", "whatsapp", "cli", "http"
    sender_id: str
    chat_id: str
    content: str
    media: list[str] = field(default_factory=list)  # local file paths
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def session_key(self) -> str:
        return f"{self.channel}:{self.chat_id}"


@dataclass
class OutboundMessage:
    channel: str
    chat_id: str
    content: str
    reply_to: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


class MessageBus:
    """Inbound queue (channels → agent) and outbound queue (agent → channel manager)."""

    def __init__(self) -> None:
        self.inbound: asyncio.Queue[InboundMessage] = asyncio.Queue()
        self.outbound: asyncio.Queue[OutboundMessage] = asyncio.Queue()
