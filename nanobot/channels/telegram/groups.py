"""channels.telegram.groupPolicy: which group messages the bot answers.

In a group or supergroup every member reads the bot's replies — tool output included — so an
allowed user's request answered there is shown to strangers. "mention" (the default) answers
only messages that @mention the bot (text or caption, commands like /reset@bot too) or reply to
one of its messages; "open" answers every message the allow-list admits; "off" ignores groups.
Private chats are never affected.
"""

from __future__ import annotations

import re
from typing import Any

GROUP_CHATS = ("group", "supergroup")


def admits(update: dict, policy: str, bot_username: str | None, bot_id: str) -> bool:
    """Whether the message in update may reach the agent under policy."""
    msg = update.get("message") or update.get("edited_message")
    if not isinstance(msg, dict):
        return True  # nothing to judge; parse_update decides
    chat = msg.get("chat")
    if not isinstance(chat, dict) or chat.get("type") not in GROUP_CHATS or policy == "open":
        return True
    if policy != "mention":
        return False
    return _mentions(msg, bot_username, bot_id) or _replies_to_bot(msg, bot_id)


def _mentions(msg: dict, bot_username: str | None, bot_id: str) -> bool:
    text = msg.get("text") if isinstance(msg.get("text"), str) else msg.get("caption")
    pattern = rf"@{re.escape(bot_username)}\b" if bot_username else None
    if isinstance(text, str) and pattern and re.search(pattern, text, re.IGNORECASE):
        return True
    entities: Any = msg.get("entities") or msg.get("caption_entities") or []
    for e in entities if isinstance(entities, list) else []:
        user = e.get("user") if isinstance(e, dict) else None
        if (
            e.get("type") == "text_mention"
            and isinstance(user, dict)
            and str(user.get("id")) == bot_id
        ):
            return True
    return False


def _replies_to_bot(msg: dict, bot_id: str) -> bool:
    reply = msg.get("reply_to_message")
    sender = reply.get("from") if isinstance(reply, dict) else None
    return isinstance(sender, dict) and str(sender.get("id")) == bot_id
