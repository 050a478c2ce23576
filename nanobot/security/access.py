"""allowFrom: who may talk to the bot, one matching rule per channel (the only place it is decided)."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import fields
from email.utils import parseaddr

EVERYONE = "*"

_TG_USERNAME = re.compile(r"[A-Za-z0-9_]+")
_WA_DOMAINS = ("s.whatsapp.net", "c.us")  # a person's JID; groups (g.us) are judged by participant
_WA_SENDER = re.compile(r"\+?(\d+)")
_WA_BAD = re.compile(r"[\s\x00-\x1f\x7f]")
_WA_ENTRY_NOISE = re.compile(r"[\s\-().]")
_EMAIL_FORBIDDEN = re.compile(r'[\s<>",;()\[\]\\\x00-\x1f\x7f]')


def _tg_parse(sender: str) -> tuple[str, str] | None:
    """(numeric id, username or "") of "id" or nanobot's "id|username"; None when malformed."""
    parts = sender.split("|")
    if len(parts) > 2 or not parts[0].isascii() or not parts[0].isdigit():
        return None
    username = parts[1] if len(parts) == 2 else ""
    if username and not _TG_USERNAME.fullmatch(username):
        return None
    return parts[0], username


def _telegram(sender: str, allow_from: list[str]) -> bool:
    """An entry matches the numeric id, the username (case-insensitive, leading @ ignored),
    or, when it holds a "|", the whole "id|username" sender exactly."""
    parsed = _tg_parse(sender)
    if parsed is None:
        return False
    user_id, username = parsed
    for raw in allow_from:
        entry = raw.strip()
        if "|" in entry:
            if entry == sender:
                return True
        elif entry.isascii() and entry.isdigit():
            if entry == user_id:
                return True
        elif username and entry.lstrip("@").lower() == username.lower():
            return True
    return False


def _wa_sender_number(sender: str) -> str | None:
    """Digits of "1234567890@s.whatsapp.net" (device suffix ":12" dropped) or "+1234567890"."""
    if "@" in sender:
        local, _, domain = sender.rpartition("@")
        if domain not in _WA_DOMAINS:
            return None
        sender = local.split(":", 1)[0]
    m = _WA_SENDER.fullmatch(sender)
    return m.group(1) if m and m.group(1).isascii() else None


def _wa_entry_number(entry: str) -> str | None:
    entry = entry.strip()
    if "@" in entry:
        return _wa_sender_number(entry)
    return _wa_sender_number(_WA_ENTRY_NOISE.sub("", entry))


def _whatsapp(sender: str, allow_from: list[str]) -> bool:
    """The phone number, with or without +, as digits; other JIDs (lid, groups) only verbatim.

    A LID the bridge resolved arrives as "PHONE_JID|LID": it matches its phone number or, as
    written, the LID ("123@lid"). An unresolved LID matches only that explicit LID entry.
    """
    phone, sep, lid = sender.partition("|")
    number = _wa_sender_number(phone)
    if sep and (number is None or not lid.endswith("@lid") or "|" in lid):
        return False
    for entry in allow_from:
        if number is not None and _wa_entry_number(entry) == number:
            return True
        if number is None and entry.strip() == phone:
            return True
        if lid and entry.strip() == lid:
            return True
    return False


def _bare_address(value: str) -> str | None:
    """value, lower-cased, when it is exactly a bare addr-spec (no display name, no brackets,
    no surrounding space), else None."""
    name, addr = parseaddr(value)
    if name or addr != value or _EMAIL_FORBIDDEN.search(value) or value.count("@") != 1:
        return None
    local, _, domain = value.partition("@")
    return value.lower() if local and domain else None


def _email(sender: str, allow_from: list[str]) -> bool:
    """The bare address, compared case-insensitively and exactly."""
    addr = _bare_address(sender)
    return addr is not None and any(_bare_address(e.strip()) == addr for e in allow_from)


def _exact(sender: str, allow_from: list[str]) -> bool:
    return sender in (e.strip() for e in allow_from)


# Shape checks that run before the "open channel" shortcut: a sender that no real client of
# the channel could produce is refused even when allowFrom is empty.
_WELL_FORMED: dict[str, Callable[[str], bool]] = {
    "telegram": lambda s: _tg_parse(s) is not None,
    # A group JID means the caller passed the chat instead of the participant who wrote.
    "whatsapp": lambda s: not _WA_BAD.search(s) and not s.endswith("@g.us"),
    "email": lambda s: _bare_address(s) is not None,
}

RULES: dict[str, Callable[[str, list[str]], bool]] = {
    "telegram": _telegram,
    "whatsapp": _whatsapp,
    "email": _email,
}


def is_allowed(channel: str, sender: str, allow_from: list[str]) -> bool:
    """Whether sender may use channel. Empty allow_from = everyone; "*" = everyone, explicitly.

    Channels without a rule of their own (cli, api) match the sender string exactly.
    """
    if not isinstance(sender, str) or not sender:
        return False
    return _decide(channel, sender, tuple(str(e) for e in allow_from))


@functools.lru_cache(maxsize=4096)
def _decide(channel: str, sender: str, entries: tuple[str, ...]) -> bool:
    """is_allowed's answer, remembered: a long allow-list is not re-parsed for every message
    (the list is part of the key, so an edited config is decided afresh)."""
    well_formed = _WELL_FORMED.get(channel)
    if well_formed is not None and not well_formed(sender):
        return False
    if not entries or EVERYONE in (e.strip() for e in entries):
        return True
    return RULES.get(channel, _exact)(sender, list(entries))


def open_channels(cfg) -> list[str]:
    """Names of enabled channels whose allowFrom is empty (anyone can talk to the bot)."""
    out = []
    for f in fields(cfg.channels):
        ch = getattr(cfg.channels, f.name)
        if getattr(ch, "enabled", False) and not getattr(ch, "allow_from", None):
            out.append(f.name)
    return out
