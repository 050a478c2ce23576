"""Memory the agent writes: memory/MEMORY.md (long-term) and memory/YYYY-MM-DD.md (daily notes).

The prompt carries MEMORY.md and today's note, each cut at a cap with a marker saying so
(memory_section); the `memory` tool appends a note or rewrites MEMORY.md, with bounded sizes.
Reads go through the safe workspace reader; writes go through the path policy and replace the
file atomically (a temporary file renamed over it, never through a link). Every call of the
tool is logged here and audited by the tool registry, like any file write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nanobot.security.pathpolicy import PathPolicy, PathRefused
from nanobot.security.wsread import Refused, WorkspaceReader
from nanobot.tools.base import REFUSED_BY_PATH_POLICY, ToolContext, ToolResult

log = logging.getLogger("nanobot.memory")

FOLDER = "memory"
LONG_TERM = f"{FOLDER}/MEMORY.md"
LONG_TERM_PROMPT_CHARS = 8_000
DAILY_PROMPT_CHARS = 4_000
LONG_TERM_MAX_BYTES = 32 * 1024
DAILY_MAX_BYTES = 16 * 1024
NOTE_MAX_CHARS = 2_000

GUIDE = (
    "## Memory\n"
    "You remember across conversations only what you write down. Use the `memory` tool (or "
    "the file tools) to keep facts about the person (name, family, work, where they live), "
    "their preferences, decisions taken and promises or open tasks — not chit-chat, not what "
    "is already written. `remember` with target `today` adds to today's note "
    f"({FOLDER}/YYYY-MM-DD.md); target `long_term` adds to {LONG_TERM}, for what stays true. "
    f"When {LONG_TERM} grows long or holds outdated facts, `rewrite` it shorter. Never store "
    "passwords, keys or other secrets."
)


def daily_note(day: float | None = None) -> str:
    """Workspace path of the daily note for `day` (a timestamp; default now, local time)."""
    return f"{FOLDER}/{time.strftime('%Y-%m-%d', time.localtime(day))}.md"


def capped(text: str, limit: int, rel: str) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n… (cut here: {rel} is longer; read_file it for the rest)"


def memory_section(read: Callable[[str], str], day: float | None = None) -> str:
    """The prompt's memory part: the guide, MEMORY.md and today's note (each capped).
    `read(rel)` is the context's safe, cached reader."""
    parts = [GUIDE]
    today = daily_note(day)
    for rel, limit in ((LONG_TERM, LONG_TERM_PROMPT_CHARS), (today, DAILY_PROMPT_CHARS)):
        text = read(rel).strip()
        if text:
            parts.append(f"### {rel}\n{capped(text, limit, rel)}")
    return "\n\n".join(parts)


class MemoryTool:
    """Appends notes and rewrites MEMORY.md in the policy's workspace."""

    name = "memory"
    description = (
        "Write to your memory: action 'remember' appends a note (target 'today' for today's "
        "note, 'long_term' for MEMORY.md); action 'rewrite' replaces MEMORY.md with a shorter, "
        "up-to-date version. Your memory files are shown in your instructions each turn."
    )
    parameters: dict[str, Any] = {
        "type": "object",
        "properties": {
            "action": {"type": "string", "enum": ["remember", "rewrite"]},
            "text": {"type": "string", "minLength": 1},
            "target": {"type": "string", "enum": ["today", "long_term"]},
        },
        "required": ["action", "text"],
        "additionalProperties": False,
    }

    def __init__(self, policy: PathPolicy) -> None:
        self.policy = policy

    async def execute(self, ctx: ToolContext, **kwargs: Any) -> ToolResult:
        action, text = kwargs["action"], kwargs["text"].strip()
        rel = (
            LONG_TERM
            if action == "rewrite" or kwargs.get("target") == "long_term"
            else daily_note()
        )
        try:
            path = self._path(rel)
        except PathRefused as exc:
            log.warning("memory: refused by path policy: %s", exc)
            return ToolResult.error(str(exc), REFUSED_BY_PATH_POLICY)
        try:
            return ToolResult(await asyncio.to_thread(self._write, path, rel, action, text))
        except (Refused, ValueError) as exc:
            return ToolResult.error(f"memory: {exc}")
        except OSError as exc:
            return ToolResult.error(f"memory: could not write {rel}: {exc.strerror or exc}")

    def _path(self, rel: str) -> Path:
        """The file's real path, which must be exactly workspace/rel: no link on the way."""
        real = self.policy.resolve(rel, write=True)
        expected = Path(os.path.realpath(self.policy.workspace)) / rel
        if real != expected:
            raise PathRefused(f"Error: {rel} or its folder is a link; remove it to use memory")
        return real

    def _write(self, path: Path, rel: str, action: str, text: str) -> str:
        limit = LONG_TERM_MAX_BYTES if rel == LONG_TERM else DAILY_MAX_BYTES
        if action == "rewrite":
            body = text + "\n"
        else:
            if len(text) > NOTE_MAX_CHARS:
                raise ValueError(f"a note is at most {NOTE_MAX_CHARS} characters; shorten it")
            reader = WorkspaceReader(self.policy.workspace, limit)
            old = reader.read_bytes(rel)
            old_text = (old or b"").decode("utf-8", "replace")
            head = old_text if not old_text or old_text.endswith("\n") else old_text + "\n"
            if not old_text and rel != LONG_TERM:
                head = f"# Notes of {rel[len(FOLDER) + 1 : -3]}\n\n"
            body = head + "- " + text.replace("\n", "\n  ") + "\n"
        size = len(body.encode())
        if size > limit:
            fix = (
                "rewrite MEMORY.md shorter"
                if rel == LONG_TERM
                else "put the lasting facts into long_term"
            )
            raise ValueError(f"{rel} would be {size} bytes, over its limit of {limit}; {fix}")
        _replace(path, body)
        log.info(
            "memory: %s %s (%d bytes)", "rewrote" if action == "rewrite" else "noted in", rel, size
        )
        return f"Saved to {rel} ({size} bytes of {limit})."


def _replace(path: Path, text: str) -> None:
    """Write text to path atomically (temporary file + fsync + rename), mode 0600."""
    folder = path.parent
    if not folder.exists():
        os.mkdir(folder, 0o700)
    if folder.is_symlink() or not folder.is_dir():
        raise ValueError(f"{folder.name} is not a plain folder; remove it to use memory")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".memory-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
