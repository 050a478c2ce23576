"""Approval requests on Telegram: inline buttons on the request, callback_query for the answer.

A request (security/approval.py) is sent as its own plain-text message with three buttons:
Approve once / Approve for this session / Deny. A button's callback_data is
"ap:<scope>:<code>:<call-hash prefix>"; a press is admitted exactly like a message (allowFrom,
rate limit, audit) and then judged by Approvals.answer — the chat, the code, the call hash and
the presser must all match, so a replayed, forged or foreign press changes nothing. Telegram
is always answered (answerCallbackQuery) for admitted pressers; the buttons are removed once
the request is answered or no longer waits.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from nanobot.channels.base import SendError
from nanobot.channels.telegram.botapi import TelegramError, TransportError, is_int
from nanobot.route.message import OutboundMessage

if TYPE_CHECKING:
    from nanobot.channels.telegram.channel import TelegramChannel

log = logging.getLogger("nanobot.channels.telegram")

_SCOPES = {"once": "once", "session": "session", "deny": "deny"}
_DONE = {"once": "✅ Approved once", "session": "✅ Approved for this session", "deny": "⛔ Denied"}


def keyboard(code: str, prefix: str) -> dict:
    """The inline keyboard of one request (callback_data ≤ 64 bytes)."""

    def button(label: str, scope: str) -> dict:
        return {"text": label, "callback_data": f"ap:{scope}:{code}:{prefix}"}

    return {
        "inline_keyboard": [
            [button("Approve once", "once"), button("Approve for this session", "session")],
            [button("Deny", "deny")],
        ]
    }


async def send_request(channel: TelegramChannel, msg: OutboundMessage) -> bool:
    """Send msg with approval buttons when it is a waiting request of its chat; False when it
    is not one (the caller sends it as usual). Raises SendError when it cannot be delivered."""
    approvals = channel.approvals
    found = approvals.buttons_for(channel.name, msg.chat_id, msg.content) if approvals else None
    if found is None:
        return False
    params: dict[str, Any] = {
        "chat_id": msg.chat_id,
        "text": msg.content,  # plain text: the command is shown exactly as it will run
        "reply_markup": keyboard(*found),
    }
    try:
        await channel._send_part(params)
    except (TelegramError, TransportError) as e:
        raise SendError(f"Telegram sendMessage failed: {e}") from None
    return True


def _parse(query: Any) -> tuple[str, str, str, int | None, str, str] | None:
    """(query id, sender, chat id, message id, data, shown text) or None when malformed."""
    if not isinstance(query, dict) or not isinstance(query.get("id"), str):
        return None
    sender, message = query.get("from"), query.get("message")
    if not isinstance(sender, dict) or not is_int(sender.get("id")):
        return None
    if not isinstance(message, dict) or not isinstance(message.get("chat"), dict):
        return None
    chat_id = message["chat"].get("id")
    data = query.get("data")
    if not is_int(chat_id) or not isinstance(data, str):
        return None
    username = sender.get("username")
    who = str(sender["id"]) + (f"|{username}" if isinstance(username, str) and username else "")
    mid = message.get("message_id")
    text = message.get("text") if isinstance(message.get("text"), str) else ""
    return query["id"], who, str(chat_id), mid if is_int(mid) else None, data, text


async def on_callback(channel: TelegramChannel, query: Any) -> None:
    """Handle one button press (an update's callback_query)."""
    parsed = _parse(query)
    if parsed is None:
        log.warning("Skipping a malformed Telegram callback_query")
        return
    qid, sender, chat_id, mid, data, shown = parsed
    verdict = channel.route.admission.check(channel.name, sender, channel.allow_list())
    if not verdict:
        if verdict.reason == "rate_limited":
            await _call(channel, "answerCallbackQuery", callback_query_id=qid, text="Too fast.")
        return  # a stranger's press gets nothing back
    parts = data.split(":")
    if len(parts) != 4 or parts[0] != "ap" or parts[1] not in _SCOPES:
        await _call(channel, "answerCallbackQuery", callback_query_id=qid)
        return
    _, scope, code, prefix = parts
    if channel.approvals is None:
        taken, text = False, "This request is no longer valid."
    else:
        taken, text = channel.approvals.answer(
            channel.name, chat_id, sender, code, _SCOPES[scope], call_prefix=prefix
        )
    await _call(channel, "answerCallbackQuery", callback_query_id=qid, text=text[:200])
    stale = not taken and text.startswith(("No request", "This request"))
    if mid is not None and (taken or stale):
        who = sender.split("|", 1)[-1] if "|" in sender else sender
        outcome = f"{_DONE[scope]} by {who}" if taken else "(no longer waiting)"
        await _call(
            channel,
            "editMessageText",
            chat_id=chat_id,
            message_id=mid,
            text=f"{shown}\n\n{outcome}"[:4096],  # without reply_markup: the buttons go
        )


async def _call(channel: TelegramChannel, method: str, **params: Any) -> None:
    """One best-effort Bot API call (a failure is logged: the answer already counted)."""
    try:
        await channel.api.call(method, params, timeout=10)
    except (TelegramError, TransportError) as e:
        log.warning("Telegram %s failed: %s", method, e)
