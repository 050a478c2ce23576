"""Which chats the program may message on its own: never a made-up one.

A chat that is not the origin of the current turn is a valid target only when its channel is
an enabled chat channel and the chat is named in that channel's allowFrom (an empty allowFrom
or "*" admits everyone, which names no chat, so it does not count here).
"""

from __future__ import annotations

from nanobot.channels import CHANNELS
from nanobot.config.schema import Config
from nanobot.security.access import EVERYONE, is_allowed


def push_channels(cfg: Config) -> list[str]:
    """Enabled channels that can send a message nobody asked for (not the API, not the terminal)."""
    return [n for n in CHANNELS if getattr(getattr(cfg.channels, n, None), "enabled", False)]


def target_error(cfg: Config, channel: str, chat_id: str) -> str | None:
    """None when (channel, chat_id) may be messaged; else why not and what to do instead."""
    if channel not in push_channels(cfg):
        enabled = ", ".join(push_channels(cfg)) or "none"
        return (
            f"'{channel}' is not an enabled chat channel (enabled: {enabled}); "
            f"set channels.{channel}.enabled or name another channel"
        )
    named = [e for e in getattr(cfg.channels, channel).allow_from if str(e).strip() != EVERYONE]
    if not chat_id or not named or not is_allowed(channel, chat_id, named):
        return (
            f"chat '{chat_id}' is not in channels.{channel}.allowFrom; messages go only to "
            f"chats listed there — add it to channels.{channel}.allowFrom first"
        )
    return None


def default_target(cfg: Config) -> tuple[str, str] | None:
    """The one chat there is when exactly one chat channel is enabled and its allowFrom names
    exactly one chat; None otherwise."""
    chans = push_channels(cfg)
    if len(chans) != 1:
        return None
    named = [str(e).strip() for e in getattr(cfg.channels, chans[0]).allow_from]
    named = [e for e in named if e and e != EVERYONE]
    if len(named) != 1 or target_error(cfg, chans[0], named[0]) is not None:
        return None
    return chans[0], named[0]
