"""Builds the prompt: identity, runtime facts, workspace bootstrap files, memory, history."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from nanobot import __version__
from nanobot.agent.memory import memory_section
from nanobot.agent.skills import Skills
from nanobot.security.redact import redact
from nanobot.security.wsread import Refused, Stamp, WorkspaceReader

# os.uname() and sys.version_info, not the platform module (which costs start-up time).
_HOST = f"{os.uname().sysname} {os.uname().machine}, Python {sys.version.split()[0]}"

BOOTSTRAP_FILES = ("AGENTS.md", "SOUL.md", "USER.md", "TOOLS.md")
MAX_FILE_CHARS = 20_000
MAX_FILE_BYTES = 256 * 1024  # larger bootstrap files are refused, not read
RECHECK_SECONDS = 1.0  # how stale a workspace file may be before its mtime is looked at again


class ContextBuilder:
    """Reads the workspace files (cached by identity) and assembles the message list for a turn.

    Workspace files are read only through WorkspaceReader (no links, no FIFOs or devices, size
    capped): a refused file is left out of the prompt. Every text in the returned messages has
    passed the one redaction point. build() does file I/O: call it off the event loop.
    """

    def __init__(self, workspace: Path, restricted: bool, sandbox_name: str = "none") -> None:
        self.workspace = workspace
        self.restricted = restricted
        self.sandbox_name = sandbox_name
        self.reader = WorkspaceReader(workspace, MAX_FILE_BYTES)
        self._cache: dict[str, tuple[float, Stamp | None, str]] = {}  # rel → (checked, id, text)
        self.skills = Skills(self.reader)  # workspace skills over the built-in ones

    def _read(self, rel: str) -> str:
        now = time.monotonic()
        hit = self._cache.get(rel)
        if hit and now - hit[0] < RECHECK_SECONDS:
            return hit[2]
        try:
            stamp = self.reader.stamp(rel)
        except (Refused, OSError):
            stamp = None  # read_text below reports why
        if hit and stamp is not None and hit[1] == stamp:
            self._cache[rel] = (now, stamp, hit[2])
            return hit[2]
        text = (self.reader.read_text(rel) or "")[:MAX_FILE_CHARS]
        self._cache[rel] = (now, stamp, text)
        return text

    def system_prompt(self, channel: str, chat_id: str) -> str:
        now = time.strftime("%Y-%m-%d %H:%M (%A), %Z")
        parts = [
            f"You are nanobot {__version__}, a personal AI assistant.",
            "## Runtime\n"
            f"- Current time: {now}\n"
            f"- Host: {_HOST}\n"
            f"- Workspace: {self.workspace}"
            f"{' (file tools are restricted to it)' if self.restricted else ''}\n"
            f"- Command sandbox: {self.sandbox_name}",
        ]
        for name in BOOTSTRAP_FILES:
            text = self._read(name).strip()
            if text:
                parts.append(f"## {name}\n{text}")
        parts.append(memory_section(self._read))  # MEMORY.md and today's note, capped
        skills = self.skills.prompt_section()
        if skills:
            parts.append(skills)
        # The same for every chat (and so redacted once, from the redactor's cache); the
        # conversation it is for comes last.
        shared = redact("\n\n".join(parts), repeats=True)
        return f"{shared}\n\n## Conversation\n{redact(f'{channel} / {chat_id}')}"

    def build(
        self, history: list[dict[str, Any]], text: str, channel: str, chat_id: str
    ) -> list[dict[str, Any]]:
        """System prompt, history and the user's text, every string content redacted."""
        return [
            {"role": "system", "content": self.system_prompt(channel, chat_id)},
            *(_redacted(m) for m in history),
            {"role": "user", "content": redact(text)},
        ]


def _redacted(message: dict[str, Any]) -> dict[str, Any]:
    content = message.get("content")
    if not isinstance(content, str):
        return message
    return {**message, "content": redact(content, repeats=True)}
