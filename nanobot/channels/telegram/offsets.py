"""Telegram's update offset, kept in NANOBOT_HOME/state/telegram_offset per bot: where the next
getUpdates starts after a restart. Updates below it were journaled by the route already."""

from __future__ import annotations

import json
import logging

from nanobot.channels.telegram.botapi import is_int
from nanobot.paths import atomic_write, ensure_dir, state_dir

log = logging.getLogger("nanobot.channels.telegram")

OFFSET_FILE = "telegram_offset"


def load(bot_id: str) -> int | None:
    """The saved offset of bot_id; None when there is none, it is unreadable or another bot's
    (whose offset would skip this bot's updates)."""
    path = state_dir() / OFFSET_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        offset, bot = data["offset"], data.get("bot_id")
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        log.warning("Ignoring unreadable %s; Telegram resends unconfirmed updates", path)
        return None
    if bot != bot_id or not is_int(offset):
        return None
    return offset


def save(bot_id: str, offset: int) -> None:
    atomic_write(
        ensure_dir(state_dir()) / OFFSET_FILE, json.dumps({"bot_id": bot_id, "offset": offset})
    )
