"""Session history: NANOBOT_HOME/sessions/<key>.jsonl, append-only, read from the tail."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

from nanobot import paths
from nanobot.security.redact import redact

log = logging.getLogger("nanobot.sessions")
_BLOCK = 16 * 1024  # the fixed read buffer of a history tail


def _file_name(key: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", key)[:80]
    if safe != key:  # keep distinct keys distinct after sanitising
        safe += "-" + hashlib.sha256(key.encode()).hexdigest()[:10]
    return safe + ".jsonl"


class SessionStore:
    """One JSONL file per session key; appends only, so a crash can at most tear the last line."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def path(self, key: str) -> Path:
        return self.dir / _file_name(key)

    def append(self, key: str, *messages: dict[str, Any]) -> None:
        if not messages:
            return
        now = time.time()
        data = "".join(
            redact(json.dumps({**m, "ts": m.get("ts", now)}, ensure_ascii=False)) + "\n"
            for m in messages
        ).encode()
        path = self.path(key)
        flags = os.O_RDWR | os.O_CREAT | os.O_APPEND
        try:
            fd = os.open(path, flags, paths.FILE_MODE)
        except FileNotFoundError:
            paths.ensure_dir(self.dir)
            fd = os.open(path, flags, paths.FILE_MODE)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data  # a crash cut the last line: start ours on a fresh one
            paths.write_all(fd, data)
        finally:
            os.close(fd)

    def tail(self, key: str, max_messages: int, max_chars: int) -> list[dict[str, Any]]:
        """The newest messages that fit both bounds, starting at a user message."""
        p = self.path(key)
        if max_messages <= 0 or not p.exists():
            return []
        raw_lines = _read_tail_lines(p, max_messages + 1, max_chars * 2 + _BLOCK)
        msgs: list[dict[str, Any]] = []
        for line in raw_lines:
            try:
                m = json.loads(line)
            except ValueError:
                log.warning("session %s: skipped a torn or corrupt line", key)
                continue
            if isinstance(m, dict) and "role" in m:
                msgs.append(m)
        out: list[dict[str, Any]] = []
        used = 0
        for m in reversed(msgs):
            calls = m.get("tool_calls")
            size = len(str(m.get("content") or "")) + (len(json.dumps(calls)) if calls else 0)
            if len(out) >= max_messages or used + size > max_chars:
                break
            out.append(m)
            used += size
        out.reverse()
        while out and out[0].get("role") != "user":  # never start with orphan tool results
            out.pop(0)
        return [{k: v for k, v in m.items() if k != "ts"} for m in out]

    def tail_then_append(
        self, key: str, max_messages: int, max_chars: int, message: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """The history before `message`, then `message` stored: one trip to the disk thread."""
        history = self.tail(key, max_messages, max_chars)
        self.append(key, message)
        return history

    def last_activity(self, key: str) -> float | None:
        p = self.path(key)
        try:
            return p.stat().st_mtime
        except FileNotFoundError:
            return None

    def reset(self, key: str, reason: str = "reset") -> Path | None:
        """Start the session afresh; the old history is kept aside as <name>.<reason>-<time>."""
        p = self.path(key)
        if not p.exists():
            return None
        aside = p.with_name(f"{p.stem}.{reason}-{time.strftime('%Y%m%dT%H%M%S')}.jsonl.old")
        os.replace(p, aside)
        return aside


def _read_tail_lines(path: Path, want_lines: int, max_bytes: int) -> list[str]:
    """The last `want_lines` complete-or-torn lines, reading backwards at most ~max_bytes.

    Reads into one fixed-size buffer, never into objects the size of the file: buffers that
    grow with the session would keep fragmenting the C heap for as long as sessions grow."""
    fd = os.open(path, os.O_RDONLY)
    try:
        buf = bytearray(_BLOCK)
        view = memoryview(buf)
        newest_first: list[str] = []
        carry = b""  # the start of a line whose end was in the block read before
        end = pos = os.fstat(fd).st_size
        while pos > 0 and len(newest_first) < want_lines and end - pos < max_bytes:
            step = min(_BLOCK, pos)
            pos -= step
            step = os.preadv(fd, [view[:step]], pos)
            right = step
            while len(newest_first) < want_lines:
                left = buf.rfind(b"\n", 0, right)
                if left < 0:
                    break
                _keep(newest_first, view[left + 1 : right], carry if right == step else b"")
                right = left
            if right != step:
                carry = b""
            carry = bytes(view[:right]) + carry
        if pos == 0 and len(newest_first) < want_lines:
            _keep(newest_first, carry, b"")  # the file's first line; elsewhere it is partial
    finally:
        os.close(fd)
    newest_first.reverse()
    return newest_first


def _keep(lines: list[str], raw: bytes | memoryview, carry: bytes) -> None:
    line = str(bytes(raw) + carry if carry else raw, "utf-8", "replace")
    if line.strip():
        lines.append(line)
