"""Mail that must never be answered: what answering would turn into a loop or backscatter."""

from __future__ import annotations

from collections.abc import Container

from nanobot.channels.email.parse import Mail

_BULK = frozenset({"bulk", "list", "junk"})
_DAEMONS = frozenset({"mailer-daemon", "postmaster", "noreply", "no-reply", "do-not-reply"})


def loop_reason(mail: Mail, own: Container[str], our_ids: Container[str]) -> str | None:
    """Why mail must not be answered, or None.

    `own` are our addresses (lower-case), `our_ids` the Message-IDs of mail we sent.
    """
    if not mail.sender:
        return "From is not exactly one valid address"
    if mail.sender in own:
        return "it comes from our own address"
    if mail.message_id and mail.message_id in our_ids:
        return "it is a message we sent"
    auto = mail.header("Auto-Submitted").split(";")[0].strip().lower()
    if auto and auto != "no":
        return f"Auto-Submitted: {auto}"
    if mail.header("Precedence").lower() in _BULK:
        return f"Precedence: {mail.header('Precedence').lower()}"
    if mail.header("List-Id") or mail.header("List-Unsubscribe"):
        return "it is mailing-list mail (List-Id)"
    if "Return-Path" in mail.msg and mail.header("Return-Path").strip("<> ") == "":
        return "it is a bounce (empty Return-Path)"
    if mail.msg.get_content_type() == "multipart/report":
        return "it is a delivery or read report"
    if mail.header("X-Autoreply") or mail.header("X-Autorespond"):
        return "it is an auto-reply (X-Autoreply)"
    if mail.sender.partition("@")[0] in _DAEMONS:
        return "it comes from a mail daemon or no-reply address"
    return None
