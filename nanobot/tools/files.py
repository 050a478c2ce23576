"""File tools for the model: read_file, write_file, edit_file and list_dir, all behind one PathPolicy."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from pathlib import Path
from typing import Any

from nanobot import paths
from nanobot.security.pathpolicy import PathPolicy, PathRefused
from nanobot.tools.base import REFUSED_BY_PATH_POLICY, ToolContext, ToolResult, cap

log = logging.getLogger("nanobot.tools")

MAX_READ_BYTES = 1_000_000
DEFAULT_RESERVE_MB = 256  # tools.writeReserveMb
MAX_LIST_ENTRIES = 500
_SNIFF_BYTES = 8192


class _ToolError(Exception):
    """A failure to report to the model; str(exc) says what to do instead."""


def _schema(**props: dict[str, Any]) -> dict[str, Any]:
    required = [name for name, p in props.items() if not p.pop("optional", False)]
    return {
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": False,
    }


class _FileTool:
    """Shared flow: resolve the path through the policy, run blocking I/O in a thread."""

    name = ""
    writes = False  # write_file and edit_file: the path policy is stricter for writes

    def __init__(self, policy: PathPolicy, reserve_mb: int = DEFAULT_RESERVE_MB) -> None:
        """reserve_mb: tools.writeReserveMb, for the tools that write (see Reserve)."""
        self.policy = policy
        self.reserve = Reserve(reserve_mb)

    async def execute(self, ctx: ToolContext, **kwargs: Any) -> ToolResult:
        raw = kwargs.get("path", ".")
        try:
            real = self.policy.resolve(raw, write=self.writes)
        except PathRefused as exc:
            log.warning("%s: refused by path policy: %s", self.name, exc)
            return ToolResult.error(str(exc), REFUSED_BY_PATH_POLICY)
        try:
            return ToolResult(await asyncio.to_thread(self._run, real, raw, kwargs))
        except _ToolError as exc:
            return ToolResult.error(str(exc))
        except OSError as exc:
            return ToolResult.error(f"{self.name} failed for {raw!r}: {exc.strerror or exc}")

    def _run(self, real: Path, raw: str, kwargs: dict[str, Any]) -> str:
        raise NotImplementedError


def _read_text(real: Path, raw: str) -> str:
    """Read a regular UTF-8 text file of at most MAX_READ_BYTES (never blocks on a FIFO)."""
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise _ToolError(f"{raw!r} does not exist; use list_dir to see what is there") from None
    except IsADirectoryError:
        raise _ToolError(f"{raw!r} is a directory; use list_dir on it") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise _ToolError(f"{raw!r} is a directory; use list_dir on it")
        if not stat.S_ISREG(mode):
            raise _ToolError(f"{raw!r} is not a regular file; only files can be read")
        chunks, size = [], 0
        while size <= MAX_READ_BYTES:  # /proc files report size 0, so read and count
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > MAX_READ_BYTES:
        raise _ToolError(
            f"{raw!r} is larger than {MAX_READ_BYTES} bytes; use exec with head, tail or grep "
            "to read the part you need"
        )
    if b"\x00" in data[:_SNIFF_BYTES]:
        raise _ToolError(f"{raw!r} is a binary file; use exec with a suitable tool to inspect it")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise _ToolError(
            f"{raw!r} is not UTF-8 text; use exec with iconv or file to inspect it"
        ) from None


class Reserve:
    """Free space the file tools must leave on the filesystem that holds nanobot's state
    (sessions, inbox, audit): a write that would eat into it is refused. Writes to another
    filesystem (a workspace of its own) are not limited here; exec's writes never can be."""

    def __init__(self, megabytes: int = DEFAULT_RESERVE_MB, state: Path | None = None) -> None:
        self.bytes = megabytes * 1024 * 1024
        self.megabytes = megabytes
        self.state = state

    def check(self, real: Path, raw: str, size: int) -> None:
        """Raise _ToolError when writing size bytes to real would leave less than the reserve."""
        if self.bytes <= 0:
            return
        state = self.state if self.state is not None else paths.home()
        try:
            st_dev = os.stat(state).st_dev
            vfs = os.statvfs(state)
            near = next(p for p in (real, *real.parents) if p.exists())
            if os.stat(near).st_dev != st_dev:
                return
            old = real.stat().st_size if real.is_file() else 0
        except (OSError, StopIteration):
            return  # cannot tell: the write itself will report a full disk
        free = vfs.f_bavail * vfs.f_frsize
        left = free - max(0, size - old)
        if left < self.bytes:
            log.warning(
                "write refused: %d bytes to %s would leave %d MiB free on the state disk "
                "(reserve %d MiB)",
                size,
                real,
                max(left, 0) // 1048576,
                self.megabytes,
            )
            raise _ToolError(
                f"refused to write {size} bytes to {raw!r}: the disk that holds nanobot's own "
                f"state has {free // 1048576} MiB free and {self.megabytes} MiB must stay free "
                "(tools.writeReserveMb). Delete files you no longer need, or write less; tell "
                "the user if the disk is full"
            )


def _write_text(real: Path, raw: str, text: str, reserve: Reserve | None = None) -> int:
    """Replace the file's content (creating it and its parent folders); returns bytes written."""
    data = text.encode("utf-8", "replace")  # lone surrogates from JSON must not crash a write
    if reserve is not None:
        reserve.check(real, raw, len(data))
    real.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        fd = os.open(real, flags, 0o644)
    except IsADirectoryError:
        raise _ToolError(f"{raw!r} is a directory; give a file path") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _ToolError(f"{raw!r} is not a regular file; write to a normal file instead")
        os.ftruncate(fd, 0)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
    return len(data)


class ReadFileTool(_FileTool):
    """Read a UTF-8 text file; output is capped, binary and huge files are refused."""

    name = "read_file"
    description = (
        "Read a UTF-8 text file and return its content. Relative paths start at the workspace."
    )
    parameters = _schema(path={"type": "string", "description": "The file to read."})

    def _run(self, real: Path, raw: str, kwargs: dict[str, Any]) -> str:
        return cap(_read_text(real, raw))


class WriteFileTool(_FileTool):
    """Write (replace) a file, creating parent folders; logged as `write_file: wrote N bytes to P`."""

    name = "write_file"
    writes = True
    description = (
        "Write content to a file, replacing it if it exists and creating parent folders. "
        "Relative paths start at the workspace."
    )
    parameters = _schema(
        path={"type": "string", "description": "The file to write."},
        content={"type": "string", "description": "The complete new content of the file."},
    )

    def _run(self, real: Path, raw: str, kwargs: dict[str, Any]) -> str:
        content = kwargs.get("content")
        if not isinstance(content, str):
            raise _ToolError("content must be a string with the complete file content")
        size = _write_text(real, raw, content, self.reserve)
        log.info("write_file: wrote %d bytes to %s", size, real)
        return f"Wrote {size} bytes to {real}"


class EditFileTool(_FileTool):
    """Replace old_text with new_text; old_text must occur exactly once. Logged as `edit_file: ...`."""

    name = "edit_file"
    writes = True
    description = (
        "Edit a file by replacing old_text with new_text. old_text must match the file exactly "
        "(whitespace included) and occur exactly once; read the file first."
    )
    parameters = _schema(
        path={"type": "string", "description": "The file to edit."},
        old_text={"type": "string", "description": "The exact text to replace."},
        new_text={"type": "string", "description": "The text to put in its place."},
    )

    def _run(self, real: Path, raw: str, kwargs: dict[str, Any]) -> str:
        old, new = kwargs.get("old_text"), kwargs.get("new_text")
        if not isinstance(old, str) or not old or not isinstance(new, str):
            raise _ToolError("old_text must be a non-empty string and new_text a string")
        text = _read_text(real, raw)
        count = text.count(old)
        if count == 0:
            raise _ToolError(
                f"old_text was not found in {raw!r}; read the file first with read_file and copy "
                "the exact text, whitespace included"
            )
        if count > 1:
            raise _ToolError(
                f"old_text occurs {count} times in {raw!r}; include more surrounding lines so it "
                "matches exactly once"
            )
        _write_text(real, raw, text.replace(old, new, 1), self.reserve)
        log.info("edit_file: edited %s", real)
        return f"Edited {real}"


class ListDirTool(_FileTool):
    """List a directory: sorted names, `/` after folders, capped at MAX_LIST_ENTRIES."""

    name = "list_dir"
    description = "List the entries of a directory (folders end with /). Default: the workspace."
    parameters = _schema(
        path={"type": "string", "description": "The directory to list.", "optional": True}
    )

    def _run(self, real: Path, raw: str, kwargs: dict[str, Any]) -> str:
        if not real.is_dir():
            if real.exists():
                raise _ToolError(f"{raw!r} is not a directory; use read_file on it")
            raise _ToolError(f"{raw!r} does not exist; list its parent folder to see what is there")
        with os.scandir(real) as it:
            names = sorted(e.name + ("/" if e.is_dir() else "") for e in it)
        if not names:
            return f"{real} is empty"
        shown = names[:MAX_LIST_ENTRIES]
        if len(names) > MAX_LIST_ENTRIES:
            shown.append(f"... ({len(names) - MAX_LIST_ENTRIES} more entries)")
        return cap("\n".join(shown))
