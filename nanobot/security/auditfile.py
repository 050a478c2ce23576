"""Reading the trail's files without trusting them: a file's identity, a line's seq number, the
first and last numbered lines (the last may be torn by a crash mid-write)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from nanobot.security.auditseal import iter_lines_reversed


def stat_key(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def seq_of(line: bytes) -> int | None:
    try:
        obj = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    seq = obj.get("seq") if isinstance(obj, dict) else None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else None


def last_seq(path: Path) -> int:
    """The seq of the last parseable line among the last two (the last may be torn), else 0."""
    for n, line in enumerate(iter_lines_reversed(path)):
        seq = seq_of(line)
        if seq is not None or n >= 1:
            return seq or 0
    return 0


def first_seq(path: Path) -> int | None:
    try:
        with open(path, "rb") as f:
            return seq_of(f.readline().rstrip(b"\n"))
    except OSError:
        return None
