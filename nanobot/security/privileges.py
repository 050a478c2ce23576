"""Refusing to run as root: a confused or hijacked agent must not own the machine."""

from __future__ import annotations

import os

from nanobot.errors import RootRefused


def refuse_root(allow_root: bool, euid: int | None = None) -> None:
    euid = os.geteuid() if euid is None else euid
    if euid == 0 and not allow_root:
        raise RootRefused(
            "refusing to run as root: the agent runs shell commands and a mistake or an injected "
            "prompt would own the whole machine. Run it as a dedicated user instead "
            "(sudo useradd --system --create-home nanobot; sudo -u nanobot nanobot …; see "
            "SECURITY.md, 'Run as a dedicated user'), or pass --allow-root if you must."
        )
