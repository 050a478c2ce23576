"""Messages between channels and the agent, and the durable queue that carries them.

An inbound message is written to NANOBOT_HOME/state/inbox before it is queued and removed only
after its reply was handed to the channel (ack), so a crash or kill -9 loses nothing: on the next
start the gateway re-queues what is still in the inbox.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nanobot import paths

log = logging.getLogger("nanobot.bus")
_seq = itertools.count()


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


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:120]


class MessageBus:
    """Inbound queue (channels → agent) and outbound queue (agent → channel manager)."""

    def __init__(self, inbox_dir: Path | None = None) -> None:
        self.inbound: asyncio.Queue[InboundMessage] = asyncio.Queue()
        self.outbound: asyncio.Queue[OutboundMessage] = asyncio.Queue()
        self.inbox_dir = inbox_dir
        self._pending: set[str] = set()  # dedupe keys of messages in the inbox
        if inbox_dir is not None:
            paths.ensure_dir(inbox_dir)
            self._pending = {f.stem.split("-", 2)[-1] for f in inbox_dir.glob("*.json")}

    async def publish_inbound(self, msg: InboundMessage) -> None:
        """Persist msg (when the bus has an inbox) and queue it; returns once it is durable."""
        if self.inbox_dir is not None:
            key = _safe(str(msg.metadata.get("dedupe_key") or f"{msg.channel}-{time.time_ns()}"))
            if key in self._pending:
                log.info("inbound %s is already pending; not queued twice", key)
                return
            self._pending.add(key)
            name = f"{time.time_ns():020d}-{next(_seq):06d}-{key}.json"
            msg.metadata["inbox_file"] = name
            msg.metadata["inbox_key"] = key
            body = json.dumps(asdict(msg), ensure_ascii=False)
            await asyncio.to_thread(paths.atomic_write, self.inbox_dir / name, body)
        await self.inbound.put(msg)

    async def ack(self, msg: InboundMessage) -> None:
        """The message was answered: forget it."""
        name = msg.metadata.get("inbox_file")
        if self.inbox_dir is not None and name:
            await asyncio.to_thread((self.inbox_dir / name).unlink, missing_ok=True)
            self._pending.discard(msg.metadata.get("inbox_key") or name.split("-", 2)[-1][:-5])

    def pending(self) -> list[InboundMessage]:
        """Messages left in the inbox by an earlier run, oldest first; unreadable files set aside."""
        if self.inbox_dir is None:
            return []
        out = []
        for f in sorted(self.inbox_dir.glob("*.json")):
            try:
                data = json.loads(f.read_text(encoding="utf-8"))
                msg = InboundMessage(**data)
            except (OSError, ValueError, TypeError) as e:
                log.warning("inbox file %s is unreadable (%s); moved aside", f.name, e)
                f.rename(f.with_suffix(".corrupt"))
                continue
            msg.metadata["inbox_file"] = f.name
            msg.metadata["inbox_key"] = f.stem.split("-", 2)[-1]
            out.append(msg)
        return out

    async def requeue_pending(self) -> int:
        msgs = self.pending()
        for msg in msgs:
            await self.inbound.put(msg)
        return len(msgs)
