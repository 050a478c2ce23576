"""What internal turns (cron jobs, heartbeat, subagent reports) share: who they are, their own
bounded sessions, and the protocols they use to reach the route."""

from __future__ import annotations

import json
from typing import Protocol

from nanobot import paths
from nanobot.agent.sessions import SessionStore
from nanobot.route.admission import Verdict
from nanobot.route.message import InboundMessage, OutboundMessage

# Sender ids of internal producers start with these; tools that would let a background run
# start more background runs (cron, spawn) refuse them, so nothing can re-trigger itself.
INTERNAL_PREFIXES = ("cron:", "heartbeat:", "subagent:")
KEEP_MESSAGES = 10  # an internal session keeps its last few exchanges, never more
KEEP_CHARS = 20_000


def is_internal(sender_id: str) -> bool:
    return sender_id.startswith(INTERNAL_PREFIXES)


class Submitter(Protocol):
    """The route's door for internal producers (route.Route.submit)."""

    async def submit(self, msg: InboundMessage) -> Verdict: ...


class Sender(Protocol):
    """Stores and delivers a message that is not a reply (dispatcher.Dispatcher.send_now)."""

    async def send_now(self, out: OutboundMessage) -> None: ...


def keep_last(sessions: SessionStore, key: str) -> None:
    """Cut session `key` down to its last KEEP_MESSAGES messages (starting at a user message),
    replacing the file atomically. Blocks: run it in a thread, while no turn of `key` runs."""
    path = sessions.path(key)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    kept = sessions.tail(key, KEEP_MESSAGES, KEEP_CHARS)
    data = "".join(json.dumps(m, ensure_ascii=False) + "\n" for m in kept)
    if len(data.encode()) != size:
        paths.atomic_write(path, data)
