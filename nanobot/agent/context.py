"""Builds the prompt: identity, runtime facts, workspace bootstrap files, memory, history."""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any

from nanobot import __version__

BOOTSTRAP_FILES = ("AGENTS.md", "SOUL.md", "USER.md", "TOOLS.md")
MEMORY_FILE = "memory/MEMORY.md"
MAX_FILE_CHARS = 20_000
RECHECK_SECONDS = 1.0  # how stale a workspace file may be before its mtime is looked at again


class ContextBuilder:
    """Reads the workspace files (cached by mtime) and assembles the message list for a turn."""

    def __init__(self, workspace: Path, restricted: bool, sandbox_name: str = "none") -> None:
        self.workspace = workspace
        self.restricted = restricted
        self.sandbox_name = sandbox_name
        self._cache: dict[str, tuple[float, float, str]] = {}  # rel → (checked, mtime, text)

    def _read(self, rel: str) -> str:
        now = time.monotonic()
        hit = self._cache.get(rel)
        if hit and now - hit[0] < RECHECK_SECONDS:
            return hit[2]
        p = self.workspace / rel
        try:
            mtime = p.stat().st_mtime
        except OSError:
            self._cache[rel] = (now, 0.0, "")
            return ""
        if hit and hit[1] == mtime:
            self._cache[rel] = (now, mtime, hit[2])
            return hit[2]
        try:
            text = p.read_text(encoding="utf-8", errors="replace")[:MAX_FILE_CHARS]
        except OSError:
            return ""
        self._cache[rel] = (now, mtime, text)
        return text

    def system_prompt(self, channel: str, chat_id: str) -> str:
        now = time.strftime("%Y-%m-%d %H:%M (%A), %Z")
        parts = [
            f"You are nanobot {__version__}, a personal AI assistant.",
            "## Runtime\n"
            f"- Current time: {now}\n"
            f"- Host: {platform.system()} {platform.machine()}, Python {platform.python_version()}\n"
            f"- Workspace: {self.workspace}"
            f"{' (file tools are restricted to it)' if self.restricted else ''}\n"
            f"- Command sandbox: {self.sandbox_name}\n"
            f"- Conversation: {channel} / {chat_id}",
        ]
        for name in BOOTSTRAP_FILES:
            text = self._read(name).strip()
            if text:
                parts.append(f"## {name}\n{text}")
        memory = self._read(MEMORY_FILE).strip()
        if memory:
            parts.append(f"## Memory ({MEMORY_FILE})\n{memory}")
        return "\n\n".join(parts)

    def build(
        self, history: list[dict[str, Any]], text: str, channel: str, chat_id: str
    ) -> list[dict[str, Any]]:
        return [
            {"role": "system", "content": self.system_prompt(channel, chat_id)},
            *history,
            {"role": "user", "content": text},
        ]
